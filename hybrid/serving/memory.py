"""Handing freed memory back to the system.

A server that refused a burst of large requests has freed them, but glibc's allocator keeps the freed
pages in its arenas (one per thread that allocated), so the process stays as large as its worst moment.
``malloc_trim`` gives them back; it walks the arenas and costs well under a millisecond when little is
free. Elsewhere than glibc this does nothing."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
