"""Parsing of git ls-remote output (strackt.move.git_head)."""

from __future__ import annotations

from ansible_collections.strackt.move.plugins.modules.git_head import parse_ls_remote

SHA1 = "3f0c6a3d1b9e4c2a8f7e6d5c4b3a29180716f5e4"
SHA2 = "0123456789abcdef0123456789abcdef01234567"


def test_exact_ref_only():
    out = "%s\trefs/heads/main-old\n%s\trefs/heads/main\n" % (SHA2, SHA1)
    assert parse_ls_remote(out, "refs/heads/main") == SHA1
    assert parse_ls_remote(out, "refs/heads/main-old") == SHA2


def test_missing_ref_and_garbage():
    assert parse_ls_remote("", "refs/heads/main") is None
    assert parse_ls_remote("warning: redirecting\n", "refs/heads/main") is None
    assert parse_ls_remote("notasha\trefs/heads/main\n", "refs/heads/main") is None
    assert parse_ls_remote(SHA1[:39] + "\trefs/heads/main\n", "refs/heads/main") is None


def test_sha256_repositories():
    sha256 = "ab" * 32
    assert parse_ls_remote("%s\trefs/heads/main\n" % sha256, "refs/heads/main") == sha256
