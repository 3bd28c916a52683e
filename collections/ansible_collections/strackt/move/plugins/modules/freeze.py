#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: freeze
short_description: The switch-over freeze on the source, in one call, and its undo
version_added: 0.1.0
description:
  - Runs on the source. O(state=frozen) is the whole freeze with no Ansible round trip inside
    it. It stops the env's unit (the front proxy keeps holding requests, since nothing listens
    on the app port), makes the final rsync pass to the target, then starts a forwarder on
    C(127.0.0.1:<app_port>) to C(<target>:80) (a transient systemd socket unit running
    C(systemd-socket-proxyd)), so held requests and visitors with a stale DNS cache reach the
    target. If the final pass fails, the env's unit is started again and the module fails; the
    source keeps serving.
  - It stops every process of the env (O(target_unit), polled until down within the budget),
    then refuses to go on while anything could still write the data - a process of the env's
    user (O(env_user)) or a file under the data paths open for writing or mapped writable - and
    names it (the env is started again, nothing switched).
  - The budget O(freeze_budget_s) (below the proxy's 10 s hold limit) bounds the freeze. Before
    anything stops, catch-up passes run until one is incremental and fits half the budget;
    otherwise the module fails with C(refused=true) and nothing changed. The final pass gets what
    is left of the budget as its deadline; over it the source is started again.
  - After the final pass a barrier file C(.strackt-barrier-<move_id>) arrives in the first data
    path (O(barrier)). The target's rsync guard writes it once the final pass's last rsync run
    succeeded (a pass of its own only when the final pass had nothing to copy). The target's
    change journal (M(strackt.move.change_journal)) tells from its last arrival on what the new
    server changed itself.
  - When the forwarder listens, the release marker C(<key dir>/released.json) is written (fsynced)
    before the held requests go. From then on the move counts as released, and a repeated call
    returns the marker's figures with C(changed=false) (resume).
  - One freeze of a move at a time, by C(flock) on C(<key dir>/freeze.lock). A controller killed
    during the freeze leaves the module running on the source, and a resume calls it again; that
    call waits for the running one (up to 15 minutes, then it fails having done nothing), and
    returns its release marker's figures, or freezes when that one gave the source back.
    V(back) waits the same way, and refuses, starting nothing, a release its caller did not see
    (O(pull) false while the marker is there).
  - Before it stops anything it makes a catch-up pass (the app still serving), so the final
    pass inside the freeze only copies what changed in the last second or so. Both passes copy
    only what the change journal (M(strackt.move.rsync_pass)) recorded, when it can vouch for it.
  - Hold, don't error. The env's Caddy site checks C(127.0.0.1:<hold port>/<env>) as its
    upstream's health (provisioned by the C(provision) role); while the file C(<hold_dir>/<env>)
    exists that check fails, and Caddy holds new requests instead of sending them to the app.
    The freeze creates that file first, waits until no connection to the app is open (requests
    in flight finish normally, nothing is reset), stops the app, makes the final pass, starts
    the forwarder, then removes the file; the held requests go through the forwarder to the
    target. No proxy reload happens (a reload drops held requests); from the hold to the release it
    holds the server's proxy lock shared, so a reload for another env's change (M(strackt.move.proxy_reload))
    waits.
  - O(state=thawed) undoes it for a rollback after the switch. It stops the forwarder, starts the
    env's unit again. It moves no data (the rollback role pulls back only what the target changed,
    with a backup, and only after a release).
  - O(state=back) is the old server's part of a rollback after the switch, in one call inside the new
    server's hold (each module call there costs a round trip the held requests wait for) - pull back
    what the new server changed since the barrier (O(changes), as M(strackt.move.change_journal)
    returns them, else the whole data; every file it replaces or deletes is kept under
    C(<env_root>/.strackt-backup/<move_id>)), bring the database back (O(database), as
    M(strackt.move.pg_move_switch) C(action=back)), start the env (as V(thawed)) and wait until it
    answers healthy through the front proxy (O(health)). A failure before the start leaves the env
    stopped here (RV(started) false); one after it says so (RV(started) true).
  - With V(held), O(since_marker) and O(journal_dir) read the new server's change journal once the
    env is stopped (RV(target_changes)), in the same call.
  - C(freeze_s) is the time from holding new requests to releasing them to the forwarder.
  - In check mode nothing is stopped or started; it reports whether it would change.
  - O(app_port) and the transfer options (O(env_root), O(data_paths), O(target_address),
    O(key_path), O(known_hosts_path)) are required for O(state=frozen); O(app_port) for
    O(state=thawed) and O(state=held); O(app_port) and O(target_address) for O(state=forwarding).
  - The steps live in C(plugins/module_utils/freeze.py); the hold switch's settings and files in
    C(plugins/module_utils/hold.py).
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.module.check_mode
  - strackt.move.environment
  - strackt.move.transfer
options:
  app_port:
    description:
      - (V(frozen), V(thawed), V(held), V(forwarding)) The env's app port (the forwarder listens on 127.0.0.1:app_port).
      - With V(released), requests in flight through the forwarder finish first (up to O(drain_timeout)).
    type: int
  target_unit:
    description:
      - The unit every process of the env belongs to (a systemd target with its services and
        timers C(PartOf) it), stopped in the freeze and started by V(thawed); default O(unit).
    type: str
  unit:
    description: The env's unit when it has no target; default C(strackt-env-<env>.service).
    type: str
  env_user:
    description: The env user's uid; no process of it may run once the env is stopped.
    type: int
  freeze_budget_s:
    description: Seconds the freeze may hold requests (below the front proxy's 10 s hold limit).
    type: float
    default: 5
  stop:
    description:
      - How the env's processes stop inside the freeze (the env's C(freeze_stop)).
      - V(graceful) is systemd's stop of the env's target (the app's own shutdown).
      - V(kill) queues the stop, then sends SIGKILL to every process in the cgroups of the env's
        running services (C(strackt-env-<env>-*.service)), once no request is in flight at
        O(app_port); with one in flight it stops gracefully. A process of O(env_user) outside them
        is left to the writer check. Only for apps that acknowledge a write once it is durable, and
        whose other processes may die at any point.
    type: str
    choices: [graceful, kill]
    default: graceful
  barrier:
    description: Push the barrier file after the final pass.
    type: bool
    default: true
  move_id:
    description: The move id (names the barrier); default the name of the key's directory.
    type: str
  forwarder_unit:
    description:
      - Name prefix of the transient forwarder units (socket and service), default
        C(strackt-forward-<env>); each freeze adds a unique suffix.
    type: str
  target_port:
    description: The target's front proxy port.
    type: int
    default: 80
  state:
    description:
      - V(frozen) hands traffic to the target; V(thawed) gives it back to the source;
        V(released) only stops the forwarder (the end of a switched move).
      - On the new server, at a rollback after the switch - V(held) holds the env's requests (its
        front proxy waits, up to its 10 s limit) and stops the env, within O(freeze_budget_s).
        V(forwarding), once the old server serves again, forwards the app port to
        O(target_address) (the old server) and releases the held requests to it (holding and
        stopping first if the env still runs). Between the two the rollback brings the data and
        the database back, which must fit the proxy's limit.
      - On the old server, between them - V(back) takes the env back in one call (see above);
        O(target_address) is the new server's address there.
    type: str
    choices: [frozen, thawed, released, held, forwarding, back]
    default: frozen
  database:
    description:
      - The env's PostgreSQL database moves with this freeze (set up by M(strackt.move.pg_move_setup)).
        With V(back), the database comes back to this server instead (M(strackt.move.pg_move_switch)
        C(action=back)).
      - Its servers are connected before anything stops; once the env is stopped and the final pass
        and barrier are done, the database is switched (M(strackt.move.pg_move_switch) C(action=switch) -
        the new server has applied everything, every sequence copied, the way back running), then the
        forwarder starts. The budget's remainder bounds its wait. A failure after it undoes the switch
        before the source starts again. RV(database_s) is its part of RV(freeze_s).
      - Runs on the database's old server (the source).
    type: dict
    suboptions:
      move_id:
        description: The move id (names the replication objects).
        type: str
        required: true
      name:
        description: The database's name.
        type: str
        required: true
      port:
        description: Port of PostgreSQL here.
        type: int
        default: 5432
      peer_address:
        description: Address of the database's new server.
        type: str
        required: true
      peer_port:
        description: Port of PostgreSQL there.
        type: int
        default: 5432
      password:
        description: The move's replication password (as given to M(strackt.move.pg_move_setup)).
        type: str
        required: true
  since_marker:
    description:
      - (V(held)) The barrier's name (C(.strackt-barrier-<move_id>)); with O(journal_dir), what this
        server changed itself since it arrived is returned as RV(target_changes).
    type: str
  journal_dir:
    description: (V(held)) This server's change journal of the move (M(strackt.move.change_journal)'s C(journal_dir)).
    type: path
  pull:
    description: (V(back)) Pull back what the new server changed (only after the freeze released the traffic).
    type: bool
    default: false
  changes:
    description:
      - (V(back)) What to pull back, per data path C({copy, delete}) (RV(target_changes)'s C(changes) when
        C(trustworthy)); left out, the whole data is pulled. An empty map pulls nothing.
    type: dict
  health:
    description: (V(back)) How to ask the env whether it answers here, as M(strackt.move.health) does.
    type: dict
    suboptions:
      domains:
        description: The env's domains.
        type: list
        elements: str
        required: true
      path:
        description: The health path.
        type: str
        default: /
      status:
        description: The expected status.
        type: int
        default: 200
      timeout:
        description: Seconds one request may take.
        type: float
        default: 5
      wait:
        description: Seconds to wait until every domain answers O(health.status).
        type: float
        default: 30
      proxy:
        description: The front proxy, host:port.
        type: str
        default: 127.0.0.1:80
  socket_proxyd:
    description: Path of systemd-socket-proxyd.
    type: path
    default: /usr/lib/systemd/systemd-socket-proxyd
  rsync_timeout:
    description: Seconds a catch-up pass may take (the final pass has the budget's deadline).
    type: float
    default: 600
  hold_dir:
    description:
      - Directory of the hold files the env's Caddy health check looks at; give the env's
        C(hold_dir) as M(strackt.move.env_info) returns it (the default comes from the same place,
        C(plugins/module_utils/hold.py)).
    type: path
    default: /run/strackt-move/hold
  hold_settle_s:
    description:
      - Seconds from creating the hold file until Caddy is sure to have seen it (its health
        check interval, 50 ms as provisioned, plus a margin).
    type: float
    default: 0.08
  hold_retry_s:
    description:
      - Seconds after the release during which held non-GET requests may still be retried
        (the file C(<hold_dir>/<env>.retry), removed by a transient timer).
    type: float
    default: 5
  drain_timeout:
    description: Seconds to wait for requests in flight to the app to finish before stopping it anyway.
    type: float
    default: 10
  journal:
    description: Use the change journal for the catch-up and final passes (else full passes).
    type: bool
    default: true
  catchup_pass:
    description: Make a catch-up pass before the freeze.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Freeze, final pass, forward to the target
  strackt.move.freeze:
    env: shop
    app_port: 8001
    target_address: 10.77.0.12
    env_root: /srv/shop
    data_paths: [/srv/shop/data]
    key_path: /root/.strackt-move/shop-20261125T123456Z/id_ed25519
    known_hosts_path: /root/.strackt-move/shop-20261125T123456Z/known_hosts
  register: freeze
"""

RETURN = r"""
freeze_s:
  description: Requests held to requests released to the forwarder, seconds (O(state=frozen)).
  returned: when it froze
  type: float
sync_pass:
  description: The final (or reverse) pass figures, as M(strackt.move.rsync_pass) returns them.
  returned: when a pass ran
  type: dict
stop_mode:
  description: How the env stopped inside the freeze, V(graceful) or V(kill) (O(stop); graceful when a request was in flight).
  returned: when it froze
  type: str
catchup_pass:
  description: The catch-up pass before the freeze (figures as M(strackt.move.rsync_pass) returns them).
  returned: when it froze and O(catchup_pass)
  type: dict
held_at_ns:
  description: When the freeze (or O(state=held)) began holding requests (ns since the epoch, this server's clock).
  returned: when it froze or held
  type: int
frozen_at_ns:
  description: The same as RV(held_at_ns) (its older name).
  returned: when it froze
  type: int
drain_s:
  description: Seconds from holding requests until the app had none in flight (part of RV(freeze_s)).
  returned: when it froze
  type: float
stop_s:
  description: Seconds the app took to stop (part of RV(freeze_s)).
  returned: when it froze
  type: float
final_sync_s:
  description: Seconds of the final pass (part of RV(freeze_s)).
  returned: when it froze
  type: float
forwarder_s:
  description: Seconds from the final pass to releasing the requests to the forwarder (part of RV(freeze_s)).
  returned: when it froze
  type: float
released_at_ns:
  description:
    - When the held requests were released to the target (ns since the epoch, this server's
      clock). The source was stopped before it, so a target entry modified at or after it was
      written on the target.
  returned: when it froze
  type: int
barrier:
  description: The barrier file's name (in the first data path on the target).
  returned: when it froze
  type: str
released:
  description: The freeze released the held requests to the target (now or, resumed, before).
  returned: when it froze
  type: bool
database_s:
  description: Seconds of the database's switch (part of RV(freeze_s)), with O(database).
  returned: when it froze with O(database)
  type: float
database:
  description:
    - The database switch's report (C(timings) per part, C(total_s), C(sequences), C(target_lsn)), with O(database);
      see M(strackt.move.pg_move_switch).
  returned: when it froze with O(database)
  type: dict
writers_s:
  description: Seconds of the writer check (part of RV(freeze_s)).
  returned: when it froze
  type: float
barrier_s:
  description: Seconds of the barrier's own push (part of RV(freeze_s)); about 0 when the final pass carried it.
  returned: when it froze
  type: float
barrier_with_final_pass:
  description: The final pass's last rsync run left the barrier (no push of its own inside the freeze).
  returned: when it froze
  type: bool
refused:
  description: On failure, the freeze refused before anything stopped (nothing changed).
  returned: failure
  type: bool
switched:
  description: On failure, whether anything was switched (false unless the release marker cannot be read).
  returned: failure
  type: bool
source_serves:
  description: On failure, whether the source serves again.
  returned: failure
  type: bool
forwarding:
  description: Whether the forwarder is active after the call.
  returned: when it froze, thawed, released or forwards
  type: bool
held:
  description: The env's requests are held here and the env is stopped (O(state=held)).
  returned: with O(state=held)
  type: bool
target_changes:
  description:
    - What this server changed itself since the barrier (C(trustworthy), C(reason), C(changed_paths), C(changes)),
      as M(strackt.move.change_journal) C(state=changes) returns them; C(trustworthy) false when the journal cannot vouch.
  returned: with O(state=held), O(since_marker) and O(journal_dir)
  type: dict
journal_s:
  description: Seconds of reading the change journal (O(state=held)).
  returned: with O(state=held) when it held
  type: float
timings:
  description: Seconds per part of O(state=back) - C(pull_s), C(database_s), C(start_s), C(health_s).
  returned: with O(state=back)
  type: dict
back_s:
  description: Seconds of the whole O(state=back).
  returned: with O(state=back)
  type: float
answers:
  description: The health answers (O(state=back)), as M(strackt.move.health) returns them.
  returned: with O(state=back)
  type: list
  elements: dict
started:
  description: On failure of O(state=back), whether the env was started here.
  returned: failure
  type: bool
"""

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.strackt.move.plugins.module_utils import health_probe
from ansible_collections.strackt.move.plugins.module_utils import hold as hd
from ansible_collections.strackt.move.plugins.module_utils import pg_files, pg_session
from ansible_collections.strackt.move.plugins.module_utils import pg_move as pg
from ansible_collections.strackt.move.plugins.module_utils.pg_handover import DatabaseHandOver, HandOverSettings
from ansible_collections.strackt.move.plugins.module_utils import rsync as rs
from ansible_collections.strackt.move.plugins.module_utils.environment import SQL_NAME_RE, env_module
from ansible_collections.strackt.move.plugins.module_utils.freeze import (
    SOCKET_PROXYD, STATES, STOP_GRACEFUL, STOP_MODES, Freeze, FreezeError, FreezeSettings, TakeBack)
from ansible_collections.strackt.move.plugins.module_utils.names import MOVE_ID_RE
from ansible_collections.strackt.move.plugins.module_utils.systemd import Systemd, SystemdError


def _database_switch(module, spec):
    """The database's part of the freeze, its options checked as pg_move_switch checks them."""
    if not pg_session.HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2 (Debian: python3-psycopg2)"),
                         exception=pg_session.PSYCOPG2_IMPORT_ERROR)
    try:
        pg.check_move_id(spec["move_id"])
        pg.check_password(spec["password"])
        pg_files.check_address(spec["peer_address"])
    except pg.PgMoveError as exc:
        module.fail_json(msg="database: %s" % exc)
    if not SQL_NAME_RE.fullmatch(spec["name"]):
        module.fail_json(msg="database.name %r is not a database name strackt.move handles" % spec["name"])
    return DatabaseHandOver(HandOverSettings(
        move_id=spec["move_id"], database=spec["name"], port=spec["port"], peer_address=spec["peer_address"],
        peer_port=spec["peer_port"], password=spec["password"]))


def _take_back(module, settings):
    """The steps of state=back, wired to rsync, PostgreSQL and the front proxy."""
    p = module.params
    pull = None
    if p["pull"]:
        if not p["move_id"] or not MOVE_ID_RE.match(p["move_id"]):
            module.fail_json(msg="state=back with pull needs move_id (the backup directory's name), got %r" % p["move_id"])
        changes = rs.changes_option(module)

        def pull():
            if changes is not None and not any(c["copy"] or c["delete"] for c in changes.values()):
                return None  # the journal vouches that the new server changed nothing
            res = rs.run_pass(list(settings.data_paths), settings.env_root, settings.target_address,
                              settings.key_path, settings.known_hosts_path, direction="pull",
                              timeout=settings.rsync_timeout, changes=changes,
                              backup_to=rs.backup_root(settings.env_root, p["move_id"]))
            res.update(kind="reverse", mode="incremental" if changes is not None else "full")
            return res
    database = None
    if p["database"]:
        handover = _database_switch(module, p["database"])

        def database():
            handover.open()
            try:
                return handover.back()
            finally:
                handover.close()
    health = p["health"]
    if not health["domains"]:
        module.fail_json(msg="health.domains is empty: give the env's domains")

    def healthy():
        ok, answers, _attempts = health_probe.wait_healthy(health["proxy"], health["domains"], health["path"],
                                                           health["status"], health["timeout"], health["wait"])
        return ok, answers
    return TakeBack(pull=pull, database=database, healthy=healthy)


def main():
    options = rs.transfer_argument_spec()
    options.update(
        app_port=dict(type="int"),
        unit=dict(type="str"),
        forwarder_unit=dict(type="str"),
        target_port=dict(type="int", default=80),
        state=dict(type="str", default="frozen", choices=list(STATES)),
        target_unit=dict(type="str"),
        env_user=dict(type="int"),
        freeze_budget_s=dict(type="float", default=5),
        stop=dict(type="str", default=STOP_GRACEFUL, choices=list(STOP_MODES)),
        barrier=dict(type="bool", default=True),
        move_id=dict(type="str"),
        socket_proxyd=dict(type="path", default=SOCKET_PROXYD),
        rsync_timeout=dict(type="float", default=600),
        hold_dir=dict(type="path", default=hd.HOLD_DIR),
        hold_settle_s=dict(type="float", default=hd.HOLD_SETTLE_S),
        hold_retry_s=dict(type="float", default=5),
        drain_timeout=dict(type="float", default=10),
        journal=dict(type="bool", default=True),
        catchup_pass=dict(type="bool", default=True),
        since_marker=dict(type="str"),
        journal_dir=dict(type="path"),
        pull=dict(type="bool", default=False),
        changes=dict(type="dict"),
        health=dict(type="dict", options=dict(
            domains=dict(type="list", elements="str", required=True), path=dict(type="str", default="/"),
            status=dict(type="int", default=200), timeout=dict(type="float", default=5),
            wait=dict(type="float", default=30), proxy=dict(type="str", default="127.0.0.1:80"))),
        database=dict(type="dict", options=dict(
            move_id=dict(type="str", required=True), name=dict(type="str", required=True),
            port=dict(type="int", default=5432), peer_address=dict(type="str", required=True),
            peer_port=dict(type="int", default=5432), password=dict(type="str", required=True, no_log=True))),
    )
    needed = ("app_port",) + rs.TRANSFER_OPTIONS
    required_if = [("state", "frozen", needed), ("state", "thawed", ("app_port",)),
                   ("state", "held", ("app_port",)), ("state", "forwarding", ("app_port", "target_address")),
                   ("state", "back", ("app_port", "health")), ("pull", True, rs.TRANSFER_OPTIONS)]
    module, env = env_module(options, required_if=required_if, supports_check_mode=True)
    p = module.params
    settings = FreezeSettings(
        env=env, target_unit=p["target_unit"] or "", unit=p["unit"] or "", forwarder_prefix=p["forwarder_unit"] or "", app_port=p["app_port"],
        target_address=p["target_address"], target_port=p["target_port"], env_root=p["env_root"],
        data_paths=tuple(p["data_paths"] or ()), key_path=p["key_path"], known_hosts_path=p["known_hosts_path"],
        socket_proxyd=p["socket_proxyd"], rsync_timeout=p["rsync_timeout"], hold_dir=p["hold_dir"],
        hold_settle_s=p["hold_settle_s"], hold_retry_s=p["hold_retry_s"], drain_timeout=p["drain_timeout"],
        journal=p["journal"], catchup_pass=p["catchup_pass"], env_user=p["env_user"],
        freeze_budget_s=p["freeze_budget_s"], barrier=p["barrier"], move_id=p["move_id"] or "",
        journal_dir=p["journal_dir"] or "", since_marker=p["since_marker"] or "", stop_mode=p["stop"])
    if settings.freeze_budget_s <= 0:
        module.fail_json(msg="freeze_budget_s must be more than 0 (seconds), not %s" % settings.freeze_budget_s)
    systemd = Systemd(run=module.run_command, systemctl=module.get_bin_path("systemctl", required=True),
                      systemd_run=module.get_bin_path("systemd-run", required=True),
                      timeout=module.get_bin_path("timeout", required=True))
    database = None
    if p["database"] and p["state"] == "frozen" and not module.check_mode:
        database = _database_switch(module, p["database"])
    take_back = _take_back(module, settings) if p["state"] == "back" else None
    try:
        result = Freeze(settings, systemd, check_mode=module.check_mode, database=database,
                        take_back=take_back).run(p["state"])
    except FreezeError as exc:
        module.fail_json(msg=str(exc), switched=exc.switched, source_serves=exc.source_serves, refused=exc.refused,
                         started=exc.started)
    except SystemdError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
