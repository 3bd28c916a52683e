// The sync passes' convergence charts, drawn with uPlot from the data embedded in the page.
(function () {
  "use strict";
  var moves = JSON.parse(document.getElementById("report-data").textContent);
  // asinh: a log-like scale that still shows a pass that changed nothing (0)
  // (from 0: nothing here is negative)
  var SOFT_LOG = { distr: 4, asinh: 1, range: function (u, min, max) { return [0, max > 0 ? max * 1.5 : 1]; } };
  var COLORS = { files: "#1f77b4", bytes: "#ff7f0e", duration: "#2ca02c", lag: "#9467bd" };

  function fmtBytes(n) {
    if (n == null) return "-";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return i === 0 ? String(Math.round(n)) + " B" : n.toFixed(1) + " " + units[i];
  }
  function fmtSeconds(s) { return s == null ? "-" : s === 0 ? "0 s" : (s < 10 ? s.toFixed(2) : s.toFixed(0)) + " s"; }
  function fmtCount(n) { return n == null ? "-" : String(Math.round(n)); }

  function series(label, scale, color, fmt) {
    return { label: label, scale: scale, stroke: color, width: 2, points: { show: true, size: 7, fill: color },
             value: function (u, v) { return fmt(v); } };
  }
  // label 0 and the powers of ten only; asinh splits also hold a -1 below the range
  function decades(u, splits) {
    return splits.map(function (v) {
      return v === 0 || (v > 0 && Math.abs(Math.log10(v) - Math.round(Math.log10(v))) < 1e-9) ? v : null;
    });
  }
  function axis(scale, side, fmt, color) {
    return { scale: scale, side: side, stroke: color, size: 70, filter: decades,
             grid: { show: side === 3, filter: decades }, ticks: { filter: decades },
             values: function (u, ticks) { return ticks.map(function (t) { return t == null ? "" : fmt(t); }); } };
  }
  var PASS_AXIS = { label: "sync pass", values: function (u, ticks) {
    return ticks.map(function (t) { return Number.isInteger(t) ? String(t) : ""; }); } };

  function options(kind, m, width) {
    var base = { width: width, height: 240, legend: { live: true }, cursor: { drag: { x: false, y: false } },
                 scales: { x: { time: false } } };
    if (kind === "changed") {
      base.title = "files and bytes changed per pass";
      base.scales.files = SOFT_LOG;
      base.scales.bytes = SOFT_LOG;
      base.series = [{ label: "pass" }, series("files changed", "files", COLORS.files, fmtCount),
                     series("bytes changed", "bytes", COLORS.bytes, fmtBytes)];
      base.axes = [PASS_AXIS, axis("files", 3, fmtCount, COLORS.files), axis("bytes", 1, fmtBytes, COLORS.bytes)];
      return [base, [m.pass, m.files, m.bytes]];
    }
    base.title = "pass duration and lag before it";
    base.scales.s = SOFT_LOG;
    base.series = [{ label: "pass" }, series("duration", "s", COLORS.duration, fmtSeconds),
                   series("lag before", "s", COLORS.lag, fmtSeconds)];
    base.axes = [PASS_AXIS, axis("s", 3, fmtSeconds, "#333")];
    return [base, [m.pass, m.duration, m.lag]];
  }

  var drawn = 0;
  document.querySelectorAll(".uplot-host").forEach(function (host) {
    var m = moves[Number(host.dataset.index)];
    if (!m || m.pass.length === 0) return;
    var width = Math.max(320, Math.floor(host.getBoundingClientRect().width) - 8);
    var made = options(host.dataset.chart, m, width);
    new uPlot(made[0], made[1], host);
    drawn++;
  });
  document.body.dataset.chartsDrawn = String(drawn);
})();
