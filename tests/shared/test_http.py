"""The HTTP plumbing every service mounts, on a small app of its own."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from pydantic import BaseModel

from shared.http import install


class Note(BaseModel):
    text: str
    stars: int


def _app() -> FastAPI:
    app = FastAPI()
    install(app, service="svc", checks={})

    @app.post("/notes")
    async def create_note(note: Note) -> Note:
        return note

    return app


async def _post(body: bytes) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        return await client.post(
            "/notes", content=body, headers={"content-type": "application/json"}
        )


async def test_a_422_can_echo_an_unpaired_surrogate() -> None:
    # Valid JSON, but "\ud800" alone cannot be encoded as UTF-8: echoing it in the
    # 422 body used to fail while rendering, which the client saw as a 500.
    response = await _post(b'{"text": "ok", "stars": "\\ud800"}')
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "stars"]
    assert error["input"] == "\ud800"


async def test_a_422_still_reads_like_fastapis_own() -> None:
    response = await _post(b'{"text": "ch\xc3\xa0o", "stars": 4.5}')
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert (error["loc"], error["input"]) == (["body", "stars"], 4.5)
    assert "integer" in error["msg"]
