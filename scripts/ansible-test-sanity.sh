#!/usr/bin/env bash
# ansible-test sanity for the collection, offline: ansible-test's per-test virtualenvs bootstrap
# pip from a download these machines cannot reach, so seed its cache with a stand-in that uses
# ensurepip (scripts/ansible-test-offline-pip.py). No container engine here: --local.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="${VENV:-$here/.venv}"
export PATH="$venv/bin:$PATH"
reqs="$("$venv/bin/python" -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')/_internal/python_requirements.py"
pip_version="$(grep -oP "pip='\K[0-9.]+" "$reqs" | head -1)"
mkdir -p ~/.ansible/test/cache
cp "$here/scripts/ansible-test-offline-pip.py" ~/.ansible/test/cache/"get_pip_${pip_version//./_}.py"
cd "$here/collections/ansible_collections/strackt/move"
exec ansible-test sanity --local --python 3.11 "$@"
