"""Big blocks given back to the system once freed, in the long-running processes of `serve`.

glibc maps a block of more than 128 KB on its own, and unmaps it when it is freed; but
after the first such block is freed it raises that threshold to the block's size (up to
32 MB), so that the next big blocks (the next big message, its files, their copies) come
from its heap, which stays resident after they are freed. A fixed threshold keeps every
block over it mapped on its own. What a big message leaves in the heap in small blocks
(SQLite's pages of it) is given back by `trim`. Elsewhere than glibc, both do nothing.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any

M_MMAP_THRESHOLD = -3
THRESHOLD = 256 * 1024
BIG = 1_000_000     # bytes of messages after which trimming is worth its time


@functools.cache
def _libc() -> Any:
    with contextlib.suppress(OSError, ImportError):
        import ctypes
        libc = ctypes.CDLL(None)
        if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim"):
            return libc
    return None


def give_back_big_blocks() -> None:
    """Set the threshold for this process (a forked child keeps it)."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD)


def trim() -> None:
    """Give the heap's free pages back to the system (after a big message)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
