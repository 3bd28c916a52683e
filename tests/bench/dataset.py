"""The reference data, generated on the server itself (nothing large crosses ssh)."""

from __future__ import annotations

import shlex

from tests.testbed import Testbed

from .envs import BenchEnv

# argv: root files total_bytes uid gid. Idempotent: a tree of the same spec is kept.
_GENERATE = r'''
import os, shutil, sys
root, files, total, uid, gid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
spec = "%d files %d bytes\n" % (files, total)
marker = os.path.join(root, ".bench-spec")
try:
    if open(marker).read() == spec:
        print("kept"); sys.exit(0)
except OSError:
    pass
shutil.rmtree(root, ignore_errors=True)
size = max(1, total // files)
block = os.urandom(max(size, 1 << 20) + 4096)
per_dir = 1000
os.makedirs(root)
os.chown(root, uid, gid)
for i in range(files):
    d = os.path.join(root, "d%04d" % (i // per_dir))
    if i % per_dir == 0:
        os.mkdir(d); os.chown(d, uid, gid)
    p = os.path.join(d, "f%07d.bin" % i)
    off = (i * 4099) % (len(block) - size)
    with open(p, "wb") as f:
        f.write(block[off:off + size])
    os.chown(p, uid, gid)
with open(marker, "w") as f:
    f.write(spec)
os.chown(marker, uid, gid)
os.sync()
print("generated")
'''

# argv: root count. Rewrites `count` files spread over the tree (new content, new mtime).
_CHANGE = r'''
import os, sys
root, count = sys.argv[1], int(sys.argv[2])
paths = []
for d in sorted(os.listdir(root)):
    full = os.path.join(root, d)
    if os.path.isdir(full):
        paths += [os.path.join(full, f) for f in sorted(os.listdir(full))]
step = max(1, len(paths) // count)
for p in paths[::step][:count]:
    with open(p, "r+b") as f:
        f.write(os.urandom(64))
print(min(count, len(paths)))
'''


def generate(testbed: Testbed, server: str, env: BenchEnv, files: int, total_bytes: int) -> str:
    """Make (or keep) a tree of `files` files totalling about `total_bytes` in the env's data
    dir on `server`, owned by the env's user."""
    cmd = "python3 - " + " ".join(shlex.quote(str(a)) for a in (env.tree, files, total_bytes, env.uid, env.gid))
    return testbed.ssh(server, cmd, input=_GENERATE, timeout=1800).stdout.strip()


def change(testbed: Testbed, server: str, env: BenchEnv, count: int) -> int:
    cmd = "python3 - " + " ".join(shlex.quote(str(a)) for a in (env.tree, count))
    return int(testbed.ssh(server, cmd, input=_CHANGE, timeout=600).stdout.strip())
