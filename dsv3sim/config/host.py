"""This machine's RAM, for the commands that refuse work too large for it before allocating.

``total`` is the physical RAM (``os.sysconf``: Linux and macOS); ``available`` is what new allocations can take
without swapping, the kernel's own estimate (``MemAvailable`` of ``/proc/meminfo``, Linux >= 3.14: free memory
plus the reclaimable page cache and slabs, proc(5)); None where that file does not exist.
"""

from __future__ import annotations

import os
from pathlib import Path

MEMINFO = Path("/proc/meminfo")


def host_memory_bytes(*, available: bool = False) -> int | None:
    """Bytes of this machine's RAM: physical, or with ``available`` what new allocations can take (module doc)."""
    if not available:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        text = MEMINFO.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024  # the file's unit is kB (KiB)
    return None
