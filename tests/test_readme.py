"""The README's try-it commands stay true: the purchase it posts is a valid event of now.

The shell lines up to the first ``curl`` are run by bash with ``curl`` replaced by a
function that prints the body it would send, so the quoting is checked as a reader's
shell would expand it. A fixed date there once aged past the seven days after which no
thank-you is sent, and the README's promised e-mail stopped coming.
"""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shared.events import decode
from shared.events.commerce import PurchaseCompleted

README = Path(__file__).resolve().parents[1] / "README.md"
PRINT_BODY = 'curl() { while [ $# -gt 0 ]; do [ "$1" = -d ] && printf %s "$2"; shift; done; }'


def _post_purchase_lines() -> str:
    text = README.read_text()
    block = re.search(r"Try the slice.*?```sh\n(.*?)```", text, re.S)
    assert block is not None, "the try-it block is gone from README.md"
    lines = block.group(1).splitlines()
    until = next(i for i, line in enumerate(lines) if line.startswith("TOKEN="))
    return "\n".join(lines[:until])


def test_the_try_it_purchase_is_valid_and_happens_now(tmp_path: Path) -> None:
    script = f"{PRINT_BODY}\n{_post_purchase_lines()}\n"
    body = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    event = decode(body)
    assert isinstance(event, PurchaseCompleted)
    assert abs(datetime.now(UTC) - event.time) < timedelta(minutes=5)
    assert event.data.customer is not None
    assert event.data.customer.email == "lan@example.com"
