"""`molecule test` (molecule/default) as one test of the suite, on this session's testbed: its
create finds the testbed up and resets it instead of booting another one, its destroy resets it
again. In parallel runs it goes on beside the other tests instead of after them all."""

from __future__ import annotations

import subprocess

import pytest

from tests.testbed import Testbed
from tests.testbed.config import REPO_ROOT

pytestmark = [pytest.mark.testbed, pytest.mark.extended]


def test_molecule_scenario(fresh_testbed: Testbed) -> None:
    env = fresh_testbed.ansible_env()  # the venv's bin/ on PATH; STRACKT_TESTBED_INDEX: this testbed
    result = subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "molecule"), "test"], cwd=REPO_ROOT, env=env,
                            text=True, capture_output=True, timeout=1800, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-4000:]
    # create found this testbed up, so destroy reset it rather than tearing it down
    assert fresh_testbed.is_up()
