"""Noticing that a file changed, without reading it: the gateway's stores file, the router's and
the console's subscriptions file."""

from __future__ import annotations

import os
from pathlib import Path

Version = tuple[int, int, int] | None


def version(path: Path) -> Version:
    """What changes when the file does: a rename gives it another inode, an edit in place another
    size or nanosecond mtime; None while there is no file."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns
