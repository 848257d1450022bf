"""Reading a service's ``/metrics`` (Prometheus text format) from the benchmarks."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample


def samples(url: str, *, timeout: float = 10) -> list[Sample]:
    """Every sample the service at ``url`` exposes, e.g. ``name_bucket`` with ``le``."""
    exposed = httpx.get(f"{url}/metrics", timeout=timeout).text
    return [s for family in text_string_to_metric_families(exposed) for s in family.samples]
