# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The systemd units of an env: one target, a service per process, a timer + service per schedule entry.

``strackt-env-<env>.target`` is the env as a whole: it Wants= every process and timer, so
starting it starts everything (no enabling needed), and each of them is PartOf= it, so stopping
or restarting it (the freeze does) stops or restarts all. A command of the definition is a shell
command line run as foreman and Procfiles do (``sh -c 'exec <command>'`` for a simple command); systemd must not
expand anything in it first, so ``$`` and ``%`` are escaped. Stdlib only.
"""

from __future__ import annotations

import posixpath
import re

from ansible_collections.strackt.move.plugins.module_utils.environment import UNIT_DIR, Environment


# A command with these is a list or pipeline: "exec" would only replace the shell with its first part.
SHELL_LIST_RE = re.compile(r"[;&|()`\n]|\$\(")


def shell_line(command: str) -> str:
    """What sh runs: ``exec <command>`` for a simple command, so the process itself is the unit's
    main process and gets systemd's SIGTERM; a list or pipeline as it is."""
    return command if SHELL_LIST_RE.search(command) else "exec " + command


def exec_start(command: str) -> str:
    """``/bin/sh -c "<shell_line>"`` quoted for systemd: the shell sees the line unchanged."""
    escaped = shell_line(command).replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return '/bin/sh -c "%s"' % escaped


def _service_lines(env: Environment) -> list[str]:
    return [
        "User=%s" % env.user,
        "Group=%s" % env.user,
        "WorkingDirectory=%s" % env.app_dir,
        "EnvironmentFile=%s" % env.env_file,
    ]


HEADER = "# Written by strackt-move (provision) from the env definition: do not edit.\n"


def target_unit(env: Environment) -> str:
    # Ordered BEFORE its parts (a target's default is after what it wants): a stop of the target
    # then ends only once every part has stopped, so `systemctl stop` of it returns with the web
    # port free (the freeze puts its forwarder there at once).
    parts = " ".join(env.process_units + env.timer_units)
    return HEADER + "\n".join([
        "[Unit]",
        "Description=strackt env %s (all its processes and timers)" % env.name,
        "DefaultDependencies=no",
        "Conflicts=shutdown.target",
        "Wants=%s" % parts,
        "Before=shutdown.target %s" % parts,
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


def process_unit(env: Environment, process: str) -> str:
    lines = [
        "[Unit]",
        "Description=strackt env %s: %s" % (env.name, process),
        "PartOf=%s" % env.target_unit,
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        *_service_lines(env),
    ]
    if process == "web":
        lines.append("Environment=PORT=%d" % env.port)
    lines += [
        "ExecStart=%s" % exec_start(env.processes[process]),
        "KillMode=mixed",
        "TimeoutStopSec=20",
        "Restart=on-failure",
        "RestartSec=2",
        "",
        "[Install]",
        "WantedBy=%s" % env.target_unit,
        "",
    ]
    return HEADER + "\n".join(lines)


def job_unit(env: Environment, name: str) -> str:
    return HEADER + "\n".join([
        "[Unit]",
        "Description=strackt env %s: %s (every %s)" % (env.name, name, env.schedule[name].every),
        "PartOf=%s" % env.target_unit,
        "",
        "[Service]",
        "Type=oneshot",
        *_service_lines(env),
        "ExecStart=%s" % exec_start(env.schedule[name].command),
        "",
    ])


def timer_unit(env: Environment, name: str) -> str:
    every = env.schedule[name].every
    return HEADER + "\n".join([
        "[Unit]",
        "Description=strackt env %s: %s every %s" % (env.name, name, every),
        "PartOf=%s" % env.target_unit,
        "",
        "[Timer]",
        "OnActiveSec=%s" % every,
        "OnUnitActiveSec=%s" % every,
        "AccuracySec=1s",
        "",
        "[Install]",
        "WantedBy=%s" % env.target_unit,
        "",
    ])


def unit_files(env: Environment) -> dict[str, str]:
    """Path -> content of every unit file of ``env``, in the order of ``env.unit_files``."""
    files = {env.target_unit: target_unit(env)}
    for process in env.process_names:
        files[env.unit_of(process)] = process_unit(env, process)
    for name in sorted(env.schedule):
        files[env.unit_of(name)] = job_unit(env, name)
    for name in sorted(env.schedule):
        files[env.unit_of(name, "timer")] = timer_unit(env, name)
    return {posixpath.join(UNIT_DIR, unit): text for unit, text in files.items()}


def belongs_to(env_name: str, filename: str, content: str) -> bool:
    """A unit file strackt-move wrote for ``env_name`` (any definition of it): named for it and
    PartOf= its target (the name alone is ambiguous: env shop's prefix is also env shop-eu's)."""
    if filename == "strackt-env-%s.target" % env_name:
        return content.startswith(HEADER)
    return (filename.startswith("strackt-env-%s-" % env_name) and filename.endswith((".service", ".timer"))
            and ("\nPartOf=strackt-env-%s.target\n" % env_name) in content)
