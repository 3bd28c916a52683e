# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the modules that set a file's owner and mode share (env_directories, server_files): the
checks made before anything is changed, so a bad owner or mode is refused by name, not halfway
through by AnsibleModule's chown."""

from __future__ import annotations

import grp
import pwd
import re

#: an octal mode as the modules take it: "0750", "750", "2755"
MODE_RE = re.compile(r"^0?[0-7]{3,4}$")


def _known(lookup, name: str) -> bool:
    if name.isdigit():
        return True
    try:
        lookup(name)
    except KeyError:
        return False
    return True


def unknown_owner(owner: str, group: str) -> str | None:
    """Which of user ``owner`` and group ``group`` this server lacks (a numeric id always counts as
    known), as "the user 'x'" / "the group 'y'"; None when it has both."""
    if not _known(pwd.getpwnam, owner):
        return "the user %r" % owner
    if not _known(grp.getgrnam, group):
        return "the group %r" % group
    return None
