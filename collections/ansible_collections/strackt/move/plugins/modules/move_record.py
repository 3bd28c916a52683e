#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: move_record
short_description: Create, advance and read the move record of an environment
version_added: 0.1.0
description:
  - The only writer of move records from playbooks. Runs on the control node (delegate to
    C(localhost)). With the file store (the default) the record is C({state_dir}/moves/{env}.json),
    written atomically with mode 0600 under an exclusive lock; finished moves are archived to
    C(moves/history/{move_id}.json). With a PostgreSQL O(record_store) the same records and lock
    live in that database, shared by several nodes.
  - The schema, its integrity checksum and the allowed stage transitions live in
    C(plugins/module_utils/move_record.py), the store and its lock in C(move_store.py) (C(move_store_pg.py) for PostgreSQL), the status
    summary in C(move_status.py); a record that fails validation is refused, never trusted.
  - Each stage role records its own V(started), V(completed) and V(failed) events; the controller
    only records that a run died.
  - Never put a secret in a message or warning; the record is not a secret store.
requirements:
  - psycopg (v3) where the task runs, only when O(record_store) is a PostgreSQL DSN
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - strackt.move.module
  - strackt.move.module.check_mode
  - strackt.move.environment
  - strackt.move.environment.state_dir
options:
  action:
    description:
      - V(admit) applies the one rule for whether a move of this env may start. It returns the record a
        resumed preflight may take over (O(resume), same source and target, preflight not completed)
        or null when no move is in progress, and fails naming the move in progress otherwise, or the
        retire in progress when a retire claimed (V(retire_begin)) the env's copy on O(target). Changes
        nothing.
      - V(create) starts a record (refused like V(admit); with O(resume) it returns the record
        V(admit) admits, its preflight started again when it had failed). Adds a warning when
        O(source_commit) differs from O(commit).
      - V(stage) adds a stage event (V(started) checks the transition; V(completed) and V(failed)
        need the stage to be the one running).
      - V(add_pass) appends a sync pass. V(warn) adds a warning once. V(set_dns) records the DNS
        state before the move (once). V(set_freeze) records the freeze of the cutover (once; the same
        figures again change nothing, other figures need O(replace)). V(wait) moves a verified move
        to C(awaiting_confirmation).
      - V(check) appends a check a stage made (O(check_name), O(stage), O(ok), O(note) as its summary,
        O(details)); the same check again changes nothing. V(backup) names a backup directory
        (O(server), O(path), O(files)) kept until the operator removes it. V(abandon_cutover) puts a
        cutover whose freeze gave up with nothing switched back to C(awaiting_confirmation) (state
        waiting); refused once the freeze released.
      - V(set_stale) keeps the latest measurement of stale traffic of a switched move (O(figures) is the
        result of M(strackt.move.stale_traffic), its times put on the control node's clock) with the
        O(forwarding) settings of the env, and returns
        C(finish_decision), whether the move may finish now (module_utils C(forwarding)). Once due, the
        record keeps C(finishing_since); a finish run again completes the move without a new
        measurement (O(figures) may then be empty), and a rollback is refused.
      - V(retain) records the stopped copy the finishing move leaves on its old server O(server) (its
        O(root) and O(paths)), kept O(retention_s) seconds from now, in C({state_dir}/retained/{env}.json);
        a copy recorded on the move's target is forgotten (the env is live there now). Needs the move in
        progress (the finish calls it before V(finish)).
      - V(retire_begin) claims the retained copies on O(servers) for a retire, under the record's lock.
        It marks each C(retiring), and from then on V(admit) and V(create) refuse a move onto its server
        until V(unretain) forgets it (removed). Refused while a move of the env is in progress; with
        O(due) (a schedule's run) that claims nothing instead and succeeds. Returns RV(claimed). A copy
        already claimed (a retire that failed midway) is claimed again unchanged.
      - V(unretain) forgets the retained copy on O(server) (it was removed), its claim with it; none there
        changes nothing.
      - V(finish) ends the move as O(outcome) and archives it. V(get) only reads.
      - Every result carries RV(retained), the env's retained copies after the action.
    type: str
    required: true
    choices: [admit, create, stage, add_pass, warn, set_dns, set_freeze, wait, check, backup, abandon_cutover,
              set_stale, retain, retire_begin, unretain, finish, get]
  root:
    description: For V(retain), the env's root on O(server).
    type: path
  paths:
    description: For V(retain), the paths of the copy (the app checkout and the data paths, each under O(root)).
    type: list
    elements: path
  retention_s:
    description: For V(retain), how long the copy is kept, in seconds (the env's C(retention_s)).
    type: int
  servers:
    description: For V(retire_begin), the servers whose retained copies the retire removes.
    type: list
    elements: str
  due:
    description:
      - For V(retire_begin), a schedule's run of the copies whose retention ended - a move in progress is
        not a refusal (nothing is claimed), and a server whose copy was forgotten meanwhile is skipped.
    type: bool
    default: false
  forwarding:
    description:
      - For V(set_stale), the env's forwarding settings in seconds, C(min_s), C(quiet_s) and C(max_s) (the
        C(forwarding) of the C(environment) that M(strackt.move.env_info) returns).
      - For V(create), the same, kept in the record; a status before the first measurement judges the
        finish by them (without them, by the defaults).
    type: dict
  operator_now:
    description: For V(set_stale), the operator says finish now (C(--now)), whatever still arrives.
    type: bool
    default: false
  check_name:
    description: The name of a V(check) (e.g. C(data_check)).
    type: str
  ok:
    description: Whether the V(check) passed.
    type: bool
  details:
    description: Details of a V(check) (counts, paths), kept as given.
    type: raw
  server:
    description: The server a V(backup) directory is on.
    type: str
  path:
    description: The V(backup) directory.
    type: str
  files:
    description: How many entries the V(backup) directory keeps.
    type: int
  source:
    description: Inventory name of the server the env runs on (V(create), V(admit)).
    type: str
  target:
    description: Inventory name of the server the env moves to (V(create), V(admit)).
    type: str
  source_address:
    description: Address of the source (V(create)).
    type: str
  target_address:
    description: Address of the target (V(create)).
    type: str
  commit:
    description: The commit going live (V(create)).
    type: str
  source_commit:
    description: The commit running on the source (V(create)); a warning is added when it differs.
    type: str
    default: ""
  database:
    description:
      - With V(create), the env's database moves too (logical replication, see the
        C(strackt.move.pg_move_*) modules) - C(server) is its new home and C(address) that server's
        address. Left out, the database stays where it is (the default).
    type: dict
    suboptions:
      server:
        description: Inventory name of the database's new home.
        type: str
        required: true
      address:
        description: Address of that server.
        type: str
        required: true
  resume:
    description:
      - With V(admit) and V(create), take over the env's record of the same source and target
        whose preflight has not completed, instead of refusing (the controller repeating an
        interrupted preflight).
    type: bool
    default: false
  stage:
    description: The stage of a V(stage) event.
    type: str
    choices: [preflight, provision, deploy, sync, verify, awaiting_confirmation, cutover, switched,
              done, rollback, rolled_back]
  event:
    description:
      - The event of a V(stage) action.
      - V(completed) of V(switched) right after the cutover completed also starts it, in the same
        write, and records the switch time; a move switched already is left as it is.
    type: str
    choices: [started, completed, failed]
    default: started
  note:
    description:
      - Free text for V(stage), V(wait), V(finish) and V(warn) (the warning text). Never a secret.
    type: str
    default: ""
  figures:
    description:
      - For V(add_pass), the pass as returned by M(strackt.move.rsync_pass) (C(duration_s),
        C(files_changed), C(bytes_changed), C(files_total), C(bytes_total), C(started_at_ns) or
        C(started_at), C(kind); C(mode) and C(vanished) are kept when given); C(database_lag)
        (C(bytes), C(seconds), as RV(strackt.move.pg_move_facts#module:lag)) is kept as the pass's
        C(database_lag_bytes)/C(database_lag_s) when the move carries the database.
      - For V(set_stale), the result of M(strackt.move.stale_traffic).
      - For V(set_freeze), the result of M(strackt.move.freeze) with C(state=frozen)
        (C(released_at_ns) required; C(frozen_at_ns) or C(held_at_ns), C(freeze_s), C(drain_s),
        C(stop_s), C(final_sync_s), C(forwarder_s), C(database_s) kept when given).
    type: dict
  kind:
    description: Kind of the pass for V(add_pass) when O(figures) has none.
    type: str
    choices: [full, incremental, final, reverse]
    default: full
  records:
    description: For V(set_dns), absolute name to the list of its addresses before the move.
    type: dict
  previous_ttl:
    description: For V(set_dns), the TTL before the move (restored after it).
    type: int
  move_ttl:
    description: For V(set_dns), the lowered TTL used during the move.
    type: int
  replace:
    description: For V(set_freeze), overwrite a recorded freeze with different figures (a second freeze).
    type: bool
    default: false
  outcome:
    description: For V(finish), how the move ends.
    type: str
    choices: [done, rolled_back]
    default: done
  require:
    description: For V(get), fail when there is no move in progress.
    type: bool
    default: false
  wait_warn_hours:
    description: A move waiting for confirmation longer than this is flagged (C(overdue), C(summary.stale)).
    type: float
    default: 24
  lock_timeout:
    description: Seconds to wait for the record's lock.
    type: float
    default: 30
"""

EXAMPLES = r"""
- name: Refuse when another move of the env is in progress
  strackt.move.move_record:
    state_dir: "{{ strackt_state_dir }}"
    env: shop
    action: admit
    source: srv1
    target: srv2
    resume: "{{ resume | default(false) }}"
  delegate_to: localhost

- name: Start the move record
  strackt.move.move_record:
    state_dir: "{{ strackt_state_dir }}"
    env: shop
    action: create
    source: srv1
    target: srv2
    source_address: 10.77.0.11
    target_address: 10.77.0.12
    commit: "{{ head.commit }}"
    source_commit: "{{ running.commit }}"
  delegate_to: localhost

- name: Record a sync pass
  strackt.move.move_record:
    state_dir: "{{ strackt_state_dir }}"
    env: shop
    action: add_pass
    figures: "{{ pass_result }}"
  delegate_to: localhost

- name: Record the freeze
  strackt.move.move_record:
    state_dir: "{{ strackt_state_dir }}"
    env: shop
    action: set_freeze
    figures: "{{ freeze_result }}"
  delegate_to: localhost
  when: freeze_result.released_at_ns is defined

- name: Read the record
  strackt.move.move_record:
    state_dir: "{{ strackt_state_dir }}"
    env: shop
    action: get
  delegate_to: localhost
  register: move
"""

RETURN = r"""
record:
  description: The record after the action (null when there is none; for V(admit), the record admitted).
  returned: always
  type: dict
exists:
  description: Whether the env has a move in progress after the action.
  returned: always
  type: bool
retained:
  description:
    - The env's retained copies after the action, each C(server), C(move_id), C(root), C(paths),
      C(retained_at), C(until) (when C(strackt-move retire --due) removes it), C(retiring) (when a retire
      claimed it, else null) and C(due) (its retention ended, or a retire claimed it).
  returned: always
  type: list
  elements: dict
claimed:
  description: For V(retire_begin), the copies the retire may remove now (as in RV(retained)); empty when none.
  returned: for V(retire_begin)
  type: list
  elements: dict
move_id:
  description: The move id.
  returned: when there is a record
  type: str
  sample: shop-20261125T123456Z
summary:
  description:
    - The move's status, computed by C(move_status.summary) exactly as C(strackt-move status --json)
      shows it for each move (stage, state, C(stage_timings), C(waiting_s), C(stale),
      C(stale_message), C(sync) with the last pass and its lag, C(predicted_freeze_s) and its basis,
      the recorded C(freeze), warnings, C(as_of) the instant it describes).
  returned: when there is a record
  type: dict
overdue:
  description: The move waits for confirmation longer than O(wait_warn_hours) (C(summary.stale)).
  returned: always
  type: bool
last_pass_started_ns:
  description:
    - When the last recorded sync pass started, ns since the epoch on the source's clock (to the
      second for passes recorded without C(started_at_ns)); null without a pass.
  returned: always
  type: int
target_writes_since_ns:
  description:
    - Since when the target may hold writes of its own, ns since the epoch on the source's clock
      - the release of the recorded freeze, else C(last_pass_started_ns); null when neither is known.
  returned: always
  type: int
finish_decision:
  description:
    - For V(set_stale), whether the switched move may finish now (C(due)), why or what it waits for
      (C(why)), and when it may at the earliest (C(not_before), null - now).
  returned: for V(set_stale)
  type: dict
archived_to:
  description: Where the archived record is (V(finish)); with the file store its path.
  returned: when archived
  type: str
"""

import datetime

from ansible_collections.strackt.move.plugins.module_utils import clock, forwarding
from ansible_collections.strackt.move.plugins.module_utils import move_record as mr
from ansible_collections.strackt.move.plugins.module_utils import move_status
from ansible_collections.strackt.move.plugins.module_utils import move_store
# imported so that Ansible ships it with the module: open_store imports it for a PostgreSQL store
from ansible_collections.strackt.move.plugins.module_utils import move_store_pg  # pylint: disable=unused-import
from ansible_collections.strackt.move.plugins.module_utils import retention
from ansible_collections.strackt.move.plugins.module_utils import stale_traffic
from ansible_collections.strackt.move.plugins.module_utils.environment import (
    environment_argument_spec, state_dir_argument_spec)
from ansible_collections.strackt.move.plugins.module_utils.local_task import TaskFailed, run_as_module
from ansible_collections.strackt.move.plugins.module_utils.names import EnvNameError, validate_env_name
from ansible.module_utils.basic import AnsibleModule

ACTIONS = ["admit", "create", "stage", "add_pass", "warn", "set_dns", "set_freeze", "wait", "check", "backup",
           "abandon_cutover", "set_stale", "retain", "retire_begin", "unretain", "finish", "get"]
READ_ONLY = ("admit", "get")
REQUIRED = {
    "admit": ("source", "target"),
    "create": ("source", "target", "source_address", "target_address", "commit"),
    "stage": ("stage",),
    "add_pass": ("figures",),
    "warn": ("note",),
    "set_dns": ("records", "previous_ttl", "move_ttl"),
    "set_freeze": ("figures",),
    "check": ("check_name", "stage", "ok"),
    "backup": ("server", "path"),
    "set_stale": ("forwarding",),
    "retain": ("server", "root", "paths", "retention_s"),
    "retire_begin": ("servers",),
    "unretain": ("server",),
}


def database_lag(lag):
    """A pass's database lag fields from M(strackt.move.pg_move_facts)'s C(lag) (none: no database moves)."""
    if not lag:
        return {}
    return dict(database_lag_bytes=int(lag["bytes"]) if lag.get("bytes") is not None else None,
                database_lag_s=round(float(lag["seconds"]), 3) if lag.get("seconds") is not None else None)


class RecordAction:
    def __init__(self, params, check_mode, env):
        self.check_mode = check_mode
        self.p = params
        self.state_dir = self.p["state_dir"]
        self.env = env
        self.threshold = float(self.p["wait_warn_hours"]) * 3600.0
        self.changed = False
        self.archived_to = None
        self.decision = None
        self.retained = None  # the env's retained copies, when an action changed them
        self.claimed = None  # the copies retire_begin claimed
        self.store = None  # the record store (move_store.open_store), opened by run()

    def fail(self, msg, **kw):
        raise TaskFailed(msg, **kw)

    def load(self, required=True):
        rec = self.store.load(self.env)
        if rec is None and required:
            self.fail("env %s has no move in progress (no record at %s): start one with "
                      "playbooks/move.yml" % (self.env, self.store.where(self.env)))
        return rec

    def save(self, rec):
        self.changed = True
        if not self.check_mode:
            self.store.save(rec)

    # ---- actions

    def admit(self):
        existing = self.load(required=False)
        try:
            return mr.admit(existing, self.p["source"], self.p["target"], self.p["resume"],
                            retained=self.store.load_retained(self.env))
        except mr.MoveInProgress as exc:
            self.fail(str(exc), record=existing.to_dict() if existing is not None else None)

    def create(self):
        p = self.p
        admitted = self.admit()
        if admitted is not None:
            if not admitted.is_open("preflight"):
                # the preflight runs again after it failed or its run died: an ordinary retry start
                admitted.transition("preflight", "resumed")
                self.save(admitted)
            return admitted
        try:
            rec = mr.MoveRecord.new(self.env, p["source"], p["target"], p["source_address"],
                                    p["target_address"], p["commit"], p["source_commit"],
                                    database=p["database"], forwarding=p["forwarding"])
        except ValueError as exc:
            self.fail("cannot start a move of %s: %s" % (self.env, exc))
        if p["source_commit"] and p["source_commit"] != p["commit"]:
            rec.warn("the source runs commit %s, the move deploys %s (the top of the branch)"
                     % (p["source_commit"], p["commit"]))
        self.save(rec)
        return rec

    def stage(self):
        rec = self.load()
        stage, event, message = self.p["stage"], self.p["event"], self.p["note"]
        try:
            changed = rec.record_event(stage, event, message)
        except mr.TransitionError as exc:
            self.fail("move %s: %s" % (rec.move_id, exc), record=rec.to_dict())
        if changed:
            self.save(rec)
        return rec

    def add_pass(self):
        rec = self.load()
        sp = dict(self.p["figures"])
        try:
            duration = round(float(sp.get("duration_s", 0)), 3)
            started_ns = sp.get("started_at_ns")
            if started_ns is not None:
                started_ns = int(started_ns)
                started = clock.ts_from_ns(started_ns)  # one instant: the second is derived from the ns
            else:
                started = sp.get("started_at") or clock.format_ts(
                    clock.utcnow() - datetime.timedelta(seconds=duration))
            sync_pass = mr.SyncPass.from_dict(mr.SyncPass(
                started_at=started, duration_s=duration,
                files_changed=int(sp["files_changed"]), bytes_changed=int(sp["bytes_changed"]),
                files_total=int(sp["files_total"]), bytes_total=int(sp["bytes_total"]),
                kind=sp.get("kind") or self.p["kind"],
                mode=sp.get("mode") or None, vanished=bool(sp.get("vanished", False)),
                started_at_ns=started_ns, **database_lag(sp.get("database_lag"))).to_dict())
        except (KeyError, TypeError, ValueError, mr.RecordError) as exc:
            self.fail("figures is not a pass result (needs duration_s, files_changed, bytes_changed, "
                      "files_total, bytes_total, started_at_ns or started_at): %s" % exc)
        try:
            rec.add_pass(sync_pass)
        except mr.TransitionError as exc:
            self.fail("move %s: %s" % (rec.move_id, exc))
        self.save(rec)
        return rec

    def warn(self):
        rec = self.load()
        if rec.warn(self.p["note"]):
            self.save(rec)
        return rec

    def set_dns(self):
        rec = self.load()
        try:
            if rec.set_dns(self.p["records"], self.p["previous_ttl"], self.p["move_ttl"]):
                self.save(rec)
        except (mr.RecordError, mr.TransitionError) as exc:
            self.fail("move %s: %s" % (rec.move_id, exc))
        return rec

    def set_freeze(self):
        rec = self.load()
        try:
            freeze = mr.Freeze.from_figures(self.p["figures"])
        except ValueError as exc:
            self.fail(str(exc))
        try:
            if rec.set_freeze(freeze, replace=self.p["replace"]):
                self.save(rec)
        except mr.TransitionError as exc:
            self.fail("move %s: %s" % (rec.move_id, exc), record=rec.to_dict())
        return rec

    def wait(self):
        rec = self.load()
        try:
            if rec.wait(self.p["note"]):
                self.save(rec)
        except mr.TransitionError as exc:
            self.fail(str(exc), record=rec.to_dict())
        return rec

    def check(self):
        rec = self.load()
        try:
            item = mr.Check.from_dict(dict(name=self.p["check_name"], stage=self.p["stage"], ok=self.p["ok"],
                                           at=clock.format_ts(clock.utcnow()), summary=self.p["note"] or "",
                                           **({"details": self.p["details"]} if self.p["details"] is not None else {})))
            if rec.add_check(item):
                self.save(rec)
        except (mr.RecordError, mr.TransitionError) as exc:
            self.fail("move %s: %s" % (rec.move_id, exc))
        return rec

    def backup(self):
        rec = self.load()
        data = dict(server=self.p["server"], path=self.p["path"], move_id=rec.move_id,
                    at=clock.format_ts(clock.utcnow()))
        if self.p["files"] is not None:
            data["files"] = self.p["files"]
        try:
            if rec.add_backup(mr.Backup.from_dict(data)):
                self.save(rec)
        except mr.RecordError as exc:
            self.fail("move %s: %s" % (rec.move_id, exc))
        return rec

    def abandon_cutover(self):
        rec = self.load()
        try:
            if rec.abandon_cutover(self.p["note"]):
                self.save(rec)
        except mr.TransitionError as exc:
            self.fail(str(exc), record=rec.to_dict())
        return rec

    def set_stale(self):
        rec = self.load()
        if rec.stage == "switched" and rec.switched_at is None:
            # a switch whose time a killed run of an earlier version left unrecorded
            rec.switch("switch time recorded by the finish (the run that switched did not record it)")
            self.save(rec)
        try:
            settings = forwarding.Settings.from_dict(dict(self.p["forwarding"]))
        except (KeyError, TypeError, ValueError) as exc:
            self.fail("forwarding is not {min_s, quiet_s, max_s}: %s" % exc)
        # a finish that began ending the move completes it: no measurement is judged anew
        if rec.finishing_since is None:
            if not self.p["figures"]:
                self.fail("action=set_stale needs figures (the result of strackt.move.stale_traffic)")
            try:
                # measured on the old server's clock; decided on this one's
                figures = stale_traffic.on_clock(self.p["figures"], clock.utcnow())
                stale = mr.StaleTraffic.from_dict(dict(
                    {k: figures.get(k) for k in mr.StaleTraffic.FIELDS if k != "forwarding"},
                    forwarding=settings.to_dict()))
            except (KeyError, TypeError, ValueError, mr.RecordError) as exc:
                self.fail("figures is not a stale_traffic result: %s" % exc)
            try:
                if rec.set_stale(stale):
                    self.save(rec)
            except mr.TransitionError as exc:
                self.fail(str(exc), record=rec.to_dict())
        decision = move_status.finish_decision(rec, clock.utcnow(), settings, self.p["operator_now"])
        if decision is None:
            self.fail("move %s is at stage %s: only a switched move is finished" % (rec.move_id, rec.stage),
                      record=rec.to_dict())
        if decision.finish and rec.begin_finish(clock.utcnow()):
            self.save(rec)
        self.decision = dict(due=decision.finish, why=decision.why,
                             not_before=clock.format_ts(decision.not_before) if decision.not_before else None)
        return rec

    def retain(self):
        rec = self.load()
        if rec.stage not in ("switched", "done"):
            self.fail("move %s is at stage %s: a copy is retained when a switched move finishes"
                      % (rec.move_id, rec.stage), record=rec.to_dict())
        if self.p["server"] != rec.source:
            self.fail("move %s left its old copy on %s, not %s" % (rec.move_id, rec.source, self.p["server"]))
        if self.p["retention_s"] <= 0:
            self.fail("retention_s must be more than 0, got %d" % self.p["retention_s"])
        now = clock.utcnow()
        retained = self.store.load_retained(self.env)
        previous = retained.on(rec.source)
        try:
            copy = mr.RetainedCopy.from_dict(dict(
                server=rec.source, move_id=rec.move_id, root=self.p["root"], paths=list(self.p["paths"]),
                # the finish run again keeps the first instant: the retention does not start anew
                retained_at=previous.retained_at if previous and previous.move_id == rec.move_id
                else clock.format_ts(now),
                until=previous.until if previous and previous.move_id == rec.move_id
                else clock.format_ts(retention.until(now, self.p["retention_s"]))))
        except mr.RecordError as exc:
            self.fail("cannot retain the copy of %s: %s" % (self.env, exc))
        changed = retained.keep(copy)
        # the env runs on the target now: a copy retained there earlier was its head start
        changed = retained.drop(rec.target) or changed
        if changed:
            self.changed = True
            if not self.check_mode:
                self.store.save_retained(retained)
        self.retained = retained
        return rec

    def retire_begin(self):
        rec = self.load(required=False)
        retained = self.store.load_retained(self.env)
        self.retained, self.claimed = retained, []
        if rec is not None and not rec.finished:
            if self.p["due"]:
                return rec  # the due copies wait for the move (a move back may be using one)
            self.fail("a move of %s is in progress (%s, %s -> %s, stage %s): its retained copies are removed only "
                      "once it ended; finish it or roll it back first, then retire; nothing was removed"
                      % (self.env, rec.move_id, rec.source, rec.target, rec.stage), record=rec.to_dict())
        now = clock.utcnow()
        for server in self.p["servers"]:
            try:
                self.changed = retained.claim(server, now) or self.changed
            except KeyError:
                if self.p["due"]:
                    continue  # removed meanwhile by another retire
                held = ", ".join(c.server for c in retained.copies) or "none"
                self.fail("%s holds no retained copy of %s (retained: %s); nothing was removed"
                          % (server, self.env, held))
            self.claimed.append(retained.on(server))
        if self.changed and not self.check_mode:
            self.store.save_retained(retained)
        return rec

    def unretain(self):
        retained = self.store.load_retained(self.env)
        if retained.drop(self.p["server"]):
            self.changed = True
            if not self.check_mode:
                self.store.save_retained(retained)
        self.retained = retained
        return self.load(required=False)

    def finish(self):
        outcome = self.p["outcome"]
        rec = self.load(required=False)
        if rec is None:
            return None  # already finished and archived
        try:
            if rec.stage != outcome:
                rec.transition(outcome, self.p["note"])
            rec.complete(outcome, self.p["note"])
        except mr.TransitionError as exc:
            self.fail("cannot finish move %s as %s: %s" % (rec.move_id, outcome, exc), record=rec.to_dict())
        self.changed = True
        if not self.check_mode:
            self.archived_to = self.store.archive(rec)
        return rec

    def get(self):
        return self.load(required=self.p["require"])

    def run(self):
        action = self.p["action"]
        missing = [k for k in REQUIRED.get(action, ()) if self.p.get(k) in (None, "")]
        if missing:
            self.fail("action=%s needs %s" % (action, ", ".join(missing)))
        try:
            self.store = move_store.open_store(self.state_dir, self.p["record_store"])
        except (move_store.StoreUnavailable, ValueError) as exc:
            self.fail(str(exc))  # names the store without its password
        try:
            return self._run(action)
        except move_store.StoreUnavailable as exc:
            self.fail(str(exc))
        finally:
            self.store.close()

    def _run(self, action):
        try:
            if action in READ_ONLY:
                rec = getattr(self, action)()
            else:
                with self.store.lock(self.env, timeout=float(self.p["lock_timeout"])):
                    rec = getattr(self, action)()
        except move_store.RecordLocked as exc:
            self.fail(str(exc))
        except mr.RecordError as exc:
            self.fail("the move record of %s cannot be trusted: %s. Inspect it; do not edit it by hand"
                      % (self.env, exc))
        except (OSError, ValueError) as exc:
            self.fail("move record of %s in %s: %s" % (self.env, self.store.where(self.env), exc))
        result = dict(changed=self.changed, record=None, exists=False, overdue=False,
                      last_pass_started_ns=None, target_writes_since_ns=None)
        if rec is not None:
            summary = move_status.summary(rec, clock.utcnow(), self.threshold)
            result.update(record=rec.to_dict(), move_id=rec.move_id, summary=summary,
                          exists=not rec.finished, overdue=summary["stale"],
                          last_pass_started_ns=summary["last_pass_started_ns"],
                          target_writes_since_ns=summary["target_writes_since_ns"])
        if self.archived_to:
            result["archived_to"] = self.archived_to
        if self.decision is not None:
            result["finish_decision"] = self.decision
        try:
            retained = self.retained or self.store.load_retained(self.env)
        except mr.RecordError as exc:
            self.fail("the retained copies of %s cannot be trusted: %s. Inspect the file; do not edit it by hand"
                      % (self.env, exc))
        now = clock.utcnow()
        result["retained"] = [dict(c.to_dict(), retiring=c.retiring, due=c.due(now)) for c in retained.copies]
        if self.claimed is not None:
            result["claimed"] = [dict(c.to_dict(), retiring=c.retiring, due=c.due(now)) for c in self.claimed]
        return result


def argument_spec():
    """The options (shared with the action plugin of the same name)."""
    spec = environment_argument_spec()
    spec.update(state_dir_argument_spec())
    spec.update(
        action=dict(type="str", required=True, choices=ACTIONS),
        source=dict(type="str"),
        target=dict(type="str"),
        source_address=dict(type="str"),
        target_address=dict(type="str"),
        commit=dict(type="str"),
        source_commit=dict(type="str", default=""),
        database=dict(type="dict", options=dict(server=dict(type="str", required=True),
                                                address=dict(type="str", required=True))),
        resume=dict(type="bool", default=False),
        stage=dict(type="str", choices=list(mr.STAGES)),
        event=dict(type="str", default="started", choices=list(mr.EVENTS)),
        note=dict(type="str", default=""),
        figures=dict(type="dict"),
        kind=dict(type="str", default="full", choices=list(mr.PASS_KINDS)),
        records=dict(type="dict"),
        previous_ttl=dict(type="int"),
        move_ttl=dict(type="int"),
        replace=dict(type="bool", default=False),
        outcome=dict(type="str", default="done", choices=["done", "rolled_back"]),
        require=dict(type="bool", default=False),
        wait_warn_hours=dict(type="float", default=move_status.DEFAULT_WAIT_WARN_S / 3600.0),
        lock_timeout=dict(type="float", default=30),
        check_name=dict(type="str"),
        ok=dict(type="bool"),
        details=dict(type="raw"),
        server=dict(type="str"),
        path=dict(type="str"),
        files=dict(type="int"),
        forwarding=dict(type="dict"),
        operator_now=dict(type="bool", default=False),
        root=dict(type="path"),
        paths=dict(type="list", elements="path"),
        retention_s=dict(type="int"),
        servers=dict(type="list", elements="str"),
        due=dict(type="bool", default=False),
    )
    return spec


def work(params, check_mode):
    """The task's result for validated ``params`` (raises TaskFailed)."""
    try:
        env = validate_env_name(params["env"])
    except EnvNameError as exc:
        raise TaskFailed(str(exc)) from None
    return RecordAction(params, check_mode, env).run()


def main():
    run_as_module(AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True), work)


if __name__ == "__main__":
    main()
