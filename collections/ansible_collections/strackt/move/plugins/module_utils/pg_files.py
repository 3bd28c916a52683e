# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Files of a database move on a server: its pg_hba.conf lines, the schema dump it restores,
and the marker of the database it created (only that one may ever be dropped). No Ansible."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import stat
from typing import Any, Mapping, Sequence

from ansible_collections.strackt.move.plugins.module_utils.pg_move import HBA_TAG, PgMoveError, Session, check_move_id

# ---------------------------------------------------------------------------------------------
# pg_hba.conf: one line per move and server, first in the file so no broader rule shadows it.


def check_address(address: Any, what: str = "peer_address") -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        raise PgMoveError("%s %r is not an IP address: give the server's address as the other server "
                          "reaches it (its ansible_host)" % (what, address))


def hba_rule(database: str, role: str, address: str, marker: str) -> str:
    ip = check_address(address)
    mask = 32 if ip.version == 4 else 128
    db = database if re.fullmatch(r"[a-z_][a-z0-9_]*", database) else '"%s"' % database.replace('"', '""')
    return "host %s %s %s/%d scram-sha-256 %s" % (db, role, ip, mask, marker)


def add_hba_rule(text: str, rule: str) -> tuple[str, bool]:
    """The file with ``rule`` before its first rule; unchanged when it is there already."""
    lines = text.splitlines()
    if rule in (line.strip() for line in lines):
        return text, False
    at = next((i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")), len(lines))
    lines.insert(at, rule)
    return "\n".join(lines) + "\n", True


def remove_hba_rules(text: str, marker: str) -> tuple[str, list[str]]:
    """The file without the lines carrying ``marker`` (exactly, at the end of the line)."""
    kept, removed = [], []
    for line in text.splitlines():
        (removed if line.rstrip().endswith(" " + marker) else kept).append(line)
    if not removed:
        return text, []
    return "\n".join(kept) + "\n", removed


def hba_moves(text: str) -> list[str]:
    """Move ids named by strackt-move db lines of a pg_hba.conf."""
    found = []
    for line in text.splitlines():
        at = line.find(" " + HBA_TAG)
        if at >= 0 and not line.lstrip().startswith("#"):
            found.append(line[at + 1 + len(HBA_TAG):].strip())
    return found


# ---------------------------------------------------------------------------------------------
# schema dump: grants to the move's own role stay on the old server only


def filter_dump(dump: str, role: str) -> str:
    pattern = re.compile(r"^(GRANT|REVOKE) .* (TO|FROM) %s;$" % re.escape(role))
    return "\n".join(line for line in dump.splitlines() if not pattern.match(line)) + "\n"


def dump_roles(dump: str) -> set[str]:
    """Roles a schema dump refers to (owners and grantees): each must exist where it is restored."""
    roles: set[str] = set()
    for line in dump.splitlines():
        match = re.match(r"^ALTER .* OWNER TO (\S+);$", line)
        if match:
            roles.add(match.group(1))
        match = re.match(r"^(?:GRANT|REVOKE) .* (?:TO|FROM) (.+);$", line)
        if match:
            roles.update(r.strip() for r in match.group(1).split(","))
    cleaned = set()
    for role in roles:
        role = role.split(" WITH ")[0].strip()
        if role.startswith('"') and role.endswith('"'):
            role = role[1:-1].replace('""', '"')
        if role.upper() != "PUBLIC" and role:
            cleaned.add(role)
    return cleaned


# ---------------------------------------------------------------------------------------------
# the marker of a database a move created on its new server: only that one may be dropped


MARKER_DIR = "/var/lib/strackt-move-db"


def marker_path(move_id: str, marker_dir: str = MARKER_DIR) -> str:
    return os.path.join(marker_dir, check_move_id(move_id) + ".json")


def created_by(markers: Sequence[Mapping[str, Any]], database: str, oid: int | None, port: int) -> str | None:
    """The move that created this database here (its oid proves it is still that database)."""
    for marker in markers:
        if marker.get("database") == database and marker.get("oid") == oid and marker.get("port", 5432) == port:
            return str(marker.get("move_id"))
    return None


def read_markers(marker_dir: str = MARKER_DIR) -> list[dict[str, Any]]:
    try:
        names = sorted(os.listdir(marker_dir))
    except FileNotFoundError:
        return []
    markers = []
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(marker_dir, name), encoding="utf-8") as handle:
                marker = json.load(handle)
        except (OSError, ValueError):
            continue  # unreadable: it proves nothing, so nothing gets dropped on its word
        if isinstance(marker, dict):
            markers.append(marker)
    return markers


def load_marker(move_id: str, database: str, port: int, marker_dir: str = MARKER_DIR) -> dict[str, Any]:
    """This move's marker here, or a new one (nothing created yet)."""
    for marker in read_markers(marker_dir):
        if marker.get("move_id") == move_id:
            return marker
    return {"move_id": move_id, "database": database, "port": port, "oid": None, "roles": []}


def save_marker(marker: Mapping[str, Any], marker_dir: str = MARKER_DIR) -> None:
    """Written before the thing it records is created (a role) or right after (the database's
    oid), so a crash never leaves something the move created without its mark."""
    os.makedirs(marker_dir, mode=0o700, exist_ok=True)
    atomic_write(marker_path(str(marker["move_id"]), marker_dir), json.dumps(dict(marker), sort_keys=True), 0o600)


def remove_marker(move_id: str, marker_dir: str = MARKER_DIR) -> bool:
    try:
        os.unlink(marker_path(move_id, marker_dir))
        return True
    except FileNotFoundError:
        return False


# ---------------------------------------------------------------------------------------------
# configuration files


def atomic_write(path: str, text: str, mode: int, owner: tuple[int, int] | None = None) -> None:
    """Replace a file: a temporary file beside it, synced, then renamed over it."""
    tmp = "%s.strackt-%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    if owner is not None:
        os.chown(tmp, *owner)
    os.replace(tmp, path)


def write_config_file(path: str, text: str) -> None:
    """Replace a PostgreSQL config file, keeping its owner and mode."""
    info = os.stat(path)
    atomic_write(path, text, stat.S_IMODE(info.st_mode), (info.st_uid, info.st_gid))


def ensure_hba_rule(db: Session, rule: str, actions: list[str], check: bool) -> None:
    """The rule first in pg_hba.conf, the configuration reloaded; a file PostgreSQL cannot
    parse afterwards is put back as it was."""
    hba_file = db.rows("SELECT current_setting('hba_file') AS f")[0]["f"]
    with open(hba_file, encoding="utf-8") as handle:
        before = handle.read()
    after, changed = add_hba_rule(before, rule)
    if not changed:
        return
    if check:
        actions.append("would add to %s: %s" % (hba_file, rule))
        return
    errors_sql = "SELECT line_number, error FROM pg_hba_file_rules WHERE error IS NOT NULL"
    known = len(db.rows(errors_sql))
    write_config_file(hba_file, after)
    errors = db.rows(errors_sql)
    if len(errors) > known:
        write_config_file(hba_file, before)
        raise PgMoveError("%s did not parse with the move's rule (%s); it was put back unchanged"
                          % (hba_file, "; ".join("line %s: %s" % (e["line_number"], e["error"]) for e in errors)))
    db.rows("SELECT pg_reload_conf()")
    actions.append("added to %s and reloaded: %s" % (hba_file, rule))
