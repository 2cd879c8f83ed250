"""The click redirector: a small WSGI app on the domain core, run on its own or beside the portal."""

from __future__ import annotations

import gc
from collections.abc import Mapping

from redirector.app import Redirector

# The garbage collector's generation thresholds in a redirector process. Every click allocates a few
# dozen objects, so with Python's default (700) the collector runs every few dozen clicks and, now and then,
# walks every cached link, device and place: a pause that every click queued behind it waits out. With
# these, on `make bench`'s load (alternating 8 s runs): p99 68, 56, 76, 78, 64 ms by default; 39, 46,
# 34, 31, 41 ms with these, at the same rate; worker memory stayed the same (117.6 MB against 117.1 MB).
GC_THRESHOLDS = (50_000, 20, 100)


def create_redirector(config: Mapping) -> Redirector:
    """Build the redirector from resolved settings (a portal's config, or Config.as_dict()), and tune this
    process's garbage collector for it (GC_THRESHOLDS)."""
    gc.set_threshold(*GC_THRESHOLDS)
    return Redirector(dict(config))


__all__ = ["GC_THRESHOLDS", "Redirector", "create_redirector"]
