#!/usr/bin/env bash
# Install the awx.awx collection into .cache/collections (git-ignored, never into the repo's
# collections/ nor ~/.ansible), so ansible-lint and `ansible-playbook --syntax-check` can resolve
# the modules awx/configure.yml uses.
#
# Galaxy is not reachable from here; PyPI is. The `ansible` community package on PyPI bundles
# awx.awx: download that one wheel (pinned by version and sha256), extract only
# ansible_collections/awx/awx. Nothing is pip-installed.
#
#   scripts/install-awx-collection.sh            # idempotent; prints the collections path
#   AWX_COLLECTIONS_DIR=/some/where scripts/install-awx-collection.sh
#
# Use it with: ANSIBLE_COLLECTIONS_PATH=<repo>/.cache/collections:<repo>/collections
set -euo pipefail

ANSIBLE_PKG_VERSION=12.3.0          # bundles awx.awx 24.6.1
AWX_COLLECTION_VERSION=24.6.1
WHEEL=ansible-${ANSIBLE_PKG_VERSION}-py3-none-any.whl
WHEEL_SHA256=cd156f82fa87f7a899212b0efa9f7ca3a24d609212de9f78428a572eb01e5414

repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${AWX_COLLECTIONS_DIR:-$repo/.cache/collections}
manifest=$dest/ansible_collections/awx/awx/MANIFEST.json
python=${PYTHON:-$repo/.venv/bin/python}
[ -x "$python" ] || python=python3

installed_version() {
    "$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["collection_info"]["version"])' "$manifest" 2>/dev/null || true
}

if [ "$(installed_version)" = "$AWX_COLLECTION_VERSION" ]; then
    echo "$dest"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "downloading $WHEEL from PyPI (for awx.awx $AWX_COLLECTION_VERSION)" >&2
"$python" -m pip download --quiet --no-deps --only-binary=:all: --dest "$work" \
    "ansible==$ANSIBLE_PKG_VERSION" >&2
echo "$WHEEL_SHA256  $work/$WHEEL" | sha256sum --check --quiet >&2

mkdir -p "$dest"
staging=$(mktemp -d "$dest/.awx.XXXXXX")
"$python" - "$work/$WHEEL" "$staging" <<'PY'
import sys
import zipfile

wheel, out = sys.argv[1], sys.argv[2]
prefix = "ansible_collections/awx/awx/"
with zipfile.ZipFile(wheel) as zf:
    members = [m for m in zf.namelist() if m.startswith(prefix) and "/test/" not in m[len(prefix) - 1:]]
    if not members:
        sys.exit(f"{wheel} has no {prefix}")
    zf.extractall(out, members)
PY
rm -rf "$dest/ansible_collections/awx/awx"
mkdir -p "$dest/ansible_collections/awx"
mv "$staging/ansible_collections/awx/awx" "$dest/ansible_collections/awx/awx"
rm -rf "$staging"
[ "$(installed_version)" = "$AWX_COLLECTION_VERSION" ] || { echo "awx.awx install failed" >&2; exit 1; }
echo "installed awx.awx $AWX_COLLECTION_VERSION into $dest" >&2
echo "$dest"
