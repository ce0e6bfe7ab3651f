"""glibc's memory allocator set up for the processes that run TensorFlow (trainer, enhancer).

TensorFlow on a CPU takes its tensors from `malloc`. glibc serves a block larger than its mmap
threshold with a mapping of its own, returned to the system when freed, but it raises that
threshold to the size of every such block freed (up to 32 MB): after the first few tensors, a
VGG16 activation of 26 MB comes from the heap, and a freed one stays in the process. Each
thread can also get an arena of its own. So a process that once held a large batch keeps that
memory, and the next large tensor may not fit in the holes and grow it again.

`return_large_blocks` fixes the threshold at 1 MB (large tensors always come from their own
mapping and go back when freed) and allows 2 arenas; `bench/footprint.py --training-only`
measured its effect (README, "Memory of the process tree"). `give_back` asks glibc to return
the free memory it still holds (after a large part of the work is over). Both do nothing where
the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("instafly.allocator")

M_MMAP_THRESHOLD = -3  # mallopt's parameter numbers, from glibc's malloc.h
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 1 << 20
ARENAS = 2


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018 - absent outside glibc
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def return_large_blocks() -> bool:
    """Serve blocks of 1 MB and more from their own mappings (freed, they go back to the
    system) and use at most 2 arenas. Call it before TensorFlow is imported; True if set."""
    libc = _glibc()
    if libc is None:
        log.debug("not glibc: the allocator keeps its defaults")
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        libc.mallopt(M_ARENA_MAX, ARENAS)
    )


def give_back() -> None:
    """Return the free memory glibc holds to the system (`malloc_trim(0)`)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
