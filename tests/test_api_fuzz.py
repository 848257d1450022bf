"""Property-based fuzzing of every service's OpenAPI with schemathesis: no 500, ever.

Each app runs in-process (ASGI) on its own migrated SQLite database, without
broker traffic (relay and consumer off), and every generated request carries an
admin token from a staff principal, so requests get past authentication into
validation, the domain code and the database. Examples per operation are bounded
(``FUZZ_EXAMPLES``, default 25) to keep the run near a minute or two on 2 cores.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, settings
from schemathesis import Case, Response
from schemathesis.openapi import from_asgi

from tests.helpers import TEST_SECRET, auth_headers
from tools.stack import migrate, settings_for

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
HEADERS = auth_headers("admin", subject="fuzzer", staff=True)


def service_app(service: str, folder: Path) -> FastAPI:
    url = f"sqlite+aiosqlite:///{folder / service}.db"
    migrate(service, url)
    settings = settings_for(
        service,
        auth_secret=TEST_SECRET,
        database_url=url,
        relay_enabled=False,
        consumer_enabled=False,
        http_rate_limit_per_minute=0,
        log_level="ERROR",
    )
    app: FastAPI = __import__(f"services.{service}.main", fromlist=["create_app"]).create_app(
        settings
    )
    return app


# Built at import: schemathesis generates one test per operation from a loaded schema
# (its fixture-based lazy loader does not support pytest 9).
_FOLDER = Path(tempfile.mkdtemp(prefix="keepwell-fuzz-"))
atexit.register(shutil.rmtree, _FOLDER, ignore_errors=True)
profile = from_asgi("/openapi.json", service_app("profile", _FOLDER))
loyalty = from_asgi("/openapi.json", service_app("loyalty", _FOLDER))
engagement = from_asgi("/openapi.json", service_app("engagement", _FOLDER))
feedback = from_asgi("/openapi.json", service_app("feedback", _FOLDER))


@schemathesis.check
def no_internal_error(ctx: schemathesis.CheckContext, response: Response, case: Case) -> None:
    """Any 5xx but 503 is a bug; 503 is the documented "dependency busy, retry" answer
    (the database locked, or /readyz without a broker)."""
    if response.status_code >= 500 and response.status_code != 503:
        raise AssertionError(f"{response.status_code} for {case.method} {case.formatted_path}")


def no_server_error(case: Case) -> None:
    response = case.call(headers=HEADERS)
    case.validate_response(response, checks=[no_internal_error])


@profile.parametrize()
@FUZZ
def test_profile_never_answers_500(case: Case) -> None:
    no_server_error(case)


@loyalty.parametrize()
@FUZZ
def test_loyalty_never_answers_500(case: Case) -> None:
    no_server_error(case)


@engagement.parametrize()
@FUZZ
def test_engagement_never_answers_500(case: Case) -> None:
    no_server_error(case)


@feedback.parametrize()
@FUZZ
def test_feedback_never_answers_500(case: Case) -> None:
    no_server_error(case)
