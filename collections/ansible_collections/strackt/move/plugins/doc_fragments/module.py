# -*- coding: utf-8 -*-
# Copyright: strackt.move contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every strackt.move module says of itself, whatever it does."""

from __future__ import annotations


class ModuleDocFragment:

    # Every module lists it after ansible.builtin.action_common_attributes (which describes the
    # attributes) and states its own check_mode and diff_mode support.
    DOCUMENTATION = r"""
attributes:
  platform:
    platforms: posix
author:
  - strackt.move contributors (@strackt)
"""

    # Most modules: check mode reports what a run would change and changes nothing; no diff.
    CHECK_MODE = r"""
options: {}
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""
