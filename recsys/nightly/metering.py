"""Per-step resource use of a night: wall seconds and the step's peak resident memory.

The peak is the kernel's high-water mark of this process's resident set (VmHWM), reset before each step through
/proc/self/clear_refs (Linux >= 4.0), so each step reports its own peak rather than the night's so far. Where that
is not available the peak is the process's maximum so far (`resource.getrusage`), which only ever grows.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak() -> bool:
    """Reset the resident-set high-water mark; False where the platform does not allow it."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    """The resident-set high-water mark in MiB (since the last `reset_peak`, or since the process started)."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


@contextmanager
def metered(seconds: dict[str, float], peaks: dict[str, float], name: str) -> Iterator[None]:
    """Record the block's wall seconds into `seconds[name]` and its peak RSS (MiB) into `peaks[name]`."""
    reset_peak()
    t0 = time.perf_counter()
    try:
        yield
    finally:
        seconds[name] = round(time.perf_counter() - t0, 3)
        peaks[name] = round(peak_rss_mb(), 1)
