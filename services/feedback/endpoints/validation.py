"""422 answers that can always be written.

FastAPI's own handler echoes the offending input, and a JSON body may carry an
unpaired surrogate (``"\\ud800"`` is valid JSON) that cannot be encoded as UTF-8, so
rendering the 422 itself failed with a 500. Here the same body is written with
non-ASCII characters escaped, which every JSON reader decodes to the same value.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


class EscapedJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
        return text.encode("ascii")


async def invalid_request(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return EscapedJSONResponse(status_code=422, content={"detail": jsonable_encoder(exc.errors())})


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, invalid_request)
