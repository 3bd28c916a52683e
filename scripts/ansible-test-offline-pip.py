"""Stand-in for the get-pip script ansible-test downloads for its per-test virtualenvs.

ansible-test (--local/--venv) fetches get-pip from a CI host that these machines cannot reach;
installing this file at ~/.ansible/test/cache/get_pip_<version>.py makes it bootstrap pip from
the interpreter's own ensurepip instead, then run `pip install <args>` as the real script does.
"""

import ensurepip
import os
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
# ensurepip points PIP_CONFIG_FILE at /dev/null for its own run; the real install must see the
# machine's pip configuration (index, certificates) again.
os.environ.pop("PIP_CONFIG_FILE", None)
# get-pip's own switches mean nothing to `pip install`; the rest are the packages to install.
GET_PIP_ONLY = {"--disable-pip-version-check", "--no-setuptools", "--no-wheel", "--quiet", "-q"}
args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
if args:
    sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *args]))
