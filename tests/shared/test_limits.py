"""Body size and per-client rate limits answer with clear errors, not by falling over."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI, Request

from shared.limits import BodySizeLimit, RateLimit


def app_with(middleware: Any, **options: int) -> httpx.AsyncClient:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(middleware, **options)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_a_body_over_the_limit_is_413() -> None:
    async with app_with(BodySizeLimit, max_bytes=2048) as client:
        assert (await client.post("/echo", content=b"x" * 2048)).json() == {"bytes": 2048}
        too_big = await client.post("/echo", content=b"x" * 2049)
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "payload_too_large"


async def test_a_streamed_body_without_length_is_cut_off_too() -> None:
    async def chunks():
        for _ in range(10):
            yield b"y" * 1000

    async with app_with(BodySizeLimit, max_bytes=4096) as client:
        response = await client.post("/echo", content=chunks())
        assert response.status_code == 413


async def test_each_client_gets_its_own_budget_and_probes_are_exempt() -> None:
    async with app_with(RateLimit, per_minute=5) as client:
        a = {"Authorization": "Bearer client-a"}
        codes = [(await client.post("/echo", headers=a)).status_code for _ in range(7)]
        assert codes == [200] * 5 + [429] * 2
        limited = await client.post("/echo", headers=a)
        assert int(limited.headers["retry-after"]) >= 1
        b = {"Authorization": "Bearer client-b"}
        assert (await client.post("/echo", headers=b)).status_code == 200
        probes = [(await client.get("/healthz", headers=a)).status_code for _ in range(10)]
        assert probes == [200] * 10
