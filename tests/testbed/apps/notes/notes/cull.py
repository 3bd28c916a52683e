"""The timer job: `python3 -m notes.cull` deletes expired cache entries and sessions."""
from __future__ import annotations

import sys

from . import settings as settings_module
from .cache import FileCache, cull_older_than


def main() -> int:
    settings = settings_module.load()
    cache_entries = FileCache(settings.data_dir, settings.cache_ttl_s).cull()
    sessions = cull_older_than(settings.data_dir / "sessions", "*.json", settings.session_ttl_s)
    print(f"notes cull: deleted {cache_entries} cache entries older than {settings.cache_ttl_s:g}s "
          f"and {sessions} sessions older than {settings.session_ttl_s:g}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
