"""The ceiling the test's own processes put on the pipeline benchmark's rate
(``bench.pipeline.harness_ceiling``)."""

from __future__ import annotations

import pytest

from bench.pipeline import REST, harness_ceiling


def test_the_harness_ceiling_counts_only_the_tests_own_processes() -> None:
    cpu_ms = {
        "profile": 0.8,
        "engagement": 1.6,
        "broker": 1.2,
        "SMTP sink": 0.5,
        "benchmark": 0.3,
        REST: 0.9,
    }
    ms, ceiling = harness_ceiling(cpu_ms, cpus=2)
    assert ms == pytest.approx(2.0)
    assert ceiling == pytest.approx(1000.0)
    assert harness_ceiling({"profile": 1.0}, cpus=2) == (0.0, float("inf"))
