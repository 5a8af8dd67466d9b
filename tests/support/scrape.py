"""Reading a service's /metrics as Prometheus would."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(http: aiohttp.ClientSession, url: str) -> dict:
    async with http.get(url + "/metrics") as response:
        assert response.status == 200
        return samples(await response.text())


async def pushes(http: aiohttp.ClientSession, gateway_url: str) -> dict[str, float]:
    """The gateway's count of pushes answered, by outcome."""
    return {
        dict(labels)["outcome"]: value
        for (name, labels), value in (await scrape(http, gateway_url)).items()
        if name == "integrator_gateway_requests_total"
    }
