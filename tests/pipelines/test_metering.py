"""Per-step wall time and peak memory of the night."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from recsys.nightly.metering import metered, peak_rss_mb, reset_peak


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the per-step peak needs /proc (Linux)")
def test_each_step_reports_its_own_peak():
    seconds: dict[str, float] = {}
    peaks: dict[str, float] = {}
    with metered(seconds, peaks, "big"):
        block = np.ones(200 * 2**20 // 8)  # 200 MiB touched
        block.sum()
    del block
    with metered(seconds, peaks, "small"):
        pass
    assert set(seconds) == {"big", "small"} and seconds["big"] >= 0
    assert peaks["big"] - peaks["small"] > 150  # the high-water mark was reset before the second step
    assert reset_peak() and peak_rss_mb() > 0
