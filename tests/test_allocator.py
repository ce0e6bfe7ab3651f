"""glibc's allocator set up for TensorFlow's processes: a large block freed goes back to the
system at once, where glibc's defaults keep it (the trainer's memory, issue 24)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import REPO

# A process frees a 20 MB block (glibc then serves blocks up to 20 MB from its heap), takes a
# 16 MB block and something small after it (as TensorFlow always has), frees the 16 MB block
# and prints how many MB its resident memory kept.
CHILD = """
import ctypes, sys
if sys.argv[1] == "tuned":
    from instaflyd import allocator
    assert allocator.return_large_blocks()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
MB = 1 << 20

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) * 1024

def touched(size):
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    return block

libc.free(touched(20 * MB))
before = rss()
block = touched(16 * MB)
pin = touched(64 * 1024)
libc.free(block)
print((rss() - before) // MB)
"""


def kept_mb(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode], cwd=REPO, capture_output=True, text=True, check=True
    )
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_large_block_freed_goes_back_to_the_system() -> None:
    assert kept_mb("default") >= 15  # what the trainer suffered from: the block stays
    assert kept_mb("tuned") <= 1
