"""The sender's journal: an accepted message whose outcome was not committed is recorded
as sent by the next sender, not sent again."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from services.engagement import journal as journal_module
from services.engagement import sender as sender_module
from services.engagement.delivery import Claim
from services.engagement.journal import Entry, SendJournal, default_path
from services.engagement.sender import Sender
from shared.db import Database
from shared.events.engagement import OutreachSent
from tests.engagement.support import (
    Scripted,
    customer,
    handle,
    now,
    only_outreach,
    published,
    purchase,
    set_outreach,
    settings,
)
from tests.helpers import wait_until
from tools.smtp_sink import SinkHandler

Smtp = tuple[int, SinkHandler]


def claim(outreach_id: str, attempt: int = 1) -> Claim:
    return Claim(
        outreach_id=outreach_id,
        customer_id="c-1",
        journey="thank_you",
        channel="email",
        template="thank_you",
        trigger_event_id="e-1",
        attempt=attempt,
        context={"secret": "not journaled"},
        address="lan@example.com",
        name="Lan",
        language="vi",
    )


def crash(journal: SendJournal) -> None:
    """What a killed process leaves: its file as written, its lock released."""
    os.close(journal._fd)


def test_an_accepted_message_stays_until_its_outcome_commits(tmp_path: Path) -> None:
    path = tmp_path / "sent.jsonl"
    journal = SendJournal.open(path)
    journal.accepted(claim("o-1"), "250 2.0.0 queued as A1")
    journal.accepted(claim("o-2"), "250 2.0.0 queued as A2")
    text = path.read_text()
    assert text.count("\n") == 2
    assert "lan@example.com" not in text  # ids only, no address or content
    assert "not journaled" not in text
    journal.settled(claim("o-1"))
    assert path.stat().st_size > 0  # o-2 still awaits its commit
    journal.settled(claim("o-2"))
    assert path.stat().st_size == 0
    journal.close()
    assert not path.exists()


def test_a_crashed_senders_entries_are_found_by_the_next(tmp_path: Path) -> None:
    path = tmp_path / "sent.jsonl"
    first = SendJournal.open(path)
    first.accepted(claim("o-1"), "250 ok 1")
    first.accepted(claim("o-2", attempt=2), "250 ok 2")
    first.settled(claim("o-1"))  # committed; o-2 was not when the process died
    crash(first)
    with path.open("ab") as f:
        f.write(b'{"outreach_id":"o-3","attem')  # a torn write (power loss), skipped
    second = SendJournal.open(path)
    assert second.path == path  # the lock went with the process
    assert [(e.outreach_id, e.attempt, e.reply) for e in second.leftovers()] == [
        ("o-1", 1, "250 ok 1"),  # found too: settling it again changes nothing (fenced)
        ("o-2", 2, "250 ok 2"),
    ]
    for entry in second.leftovers():
        second.settled(entry.claim())
    assert second.leftovers() == []
    second.close()
    assert not path.exists()


def test_a_message_handed_over_whose_reply_was_never_read_is_in_doubt(tmp_path: Path) -> None:
    path = tmp_path / "sent.jsonl"
    first = SendJournal.open(path)
    for name in ("handed", "accepted", "refused"):
        first.handed(claim(name))
    first.accepted(claim("accepted"), "250 queued as A1")
    first.failed(claim("refused"))  # recorded as a failure and retried, not in doubt
    crash(first)
    with path.open("ab") as f:  # a line from before the journal had steps: an acceptance
        f.write(Entry.of(claim("older"), "250 ok").line().replace(b',"state":"accepted"', b""))
    second = SendJournal.open(path)
    found = {e.outreach_id: (e.state, e.recorded_reply) for e in second.leftovers()}
    assert found == {
        "handed": (journal_module.HANDED, journal_module.IN_DOUBT),
        "accepted": (journal_module.ACCEPTED, "250 queued as A1"),
        "older": (journal_module.ACCEPTED, "250 ok"),
    }
    second.close()


def test_a_refusal_after_the_hand_over_empties_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "sent.jsonl"
    journal = SendJournal.open(path)
    journal.handed(claim("o-1"))
    assert path.stat().st_size > 0
    journal.failed(claim("o-1"))
    assert path.stat().st_size == 0
    journal.not_settled(claim("o-1"))  # its failure's commit failed: retried, not recorded
    assert journal.leftovers() == []
    journal.close()
    assert not path.exists()


def test_an_earlier_attempt_handed_over_is_known_until_recorded(tmp_path: Path) -> None:
    journal = SendJournal.open(tmp_path / "sent.jsonl")
    journal.handed(claim("refused"))
    journal.failed(claim("refused"))
    assert journal.earlier("refused") is None  # refused: sending it again is right
    journal.accepted(claim("o-1"), "250 queued")
    journal.accepted(claim("o-1", attempt=2), "250 queued")  # recorded again, not sent
    journal.settled(claim("o-1"))  # the first attempt's commit, fenced
    earlier = journal.earlier("o-1")
    assert earlier is not None
    assert earlier.attempt == 2
    journal.settled(claim("o-1", attempt=2))
    assert journal.earlier("o-1") is None
    journal.close()


def test_a_running_senders_journal_is_not_shared(tmp_path: Path) -> None:
    path = tmp_path / "sent.jsonl"
    first = SendJournal.open(path)
    first.accepted(claim("o-1"), "250 ok")
    second = SendJournal.open(path)
    assert second.path == tmp_path / "sent.1.jsonl"
    assert second.leftovers() == []
    second.close()
    first.close()
    assert path.exists()  # o-1 never committed: kept for the next sender


def test_a_failed_commit_leaves_the_entry_for_the_claimer(tmp_path: Path) -> None:
    journal = SendJournal.open(tmp_path / "sent.jsonl")
    journal.accepted(claim("o-1"), "250 ok")
    assert journal.leftovers() == []  # a worker is settling it
    journal.not_settled(claim("o-1"))
    assert [e.outreach_id for e in journal.leftovers()] == ["o-1"]
    journal.settled(claim("o-1"))
    assert journal.leftovers() == []
    journal.close()


def test_a_long_journal_is_rewritten_with_what_still_awaits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "MAX_BYTES", 2_000)
    path = tmp_path / "sent.jsonl"
    journal = SendJournal.open(path)
    journal.accepted(claim("kept"), "250 ok")
    for n in range(40):
        journal.accepted(claim(f"o-{n}"), "250 ok")
        journal.settled(claim(f"o-{n}"))
    assert path.stat().st_size < 2_000
    crash(journal)
    again = SendJournal.open(path)
    found = [e.outreach_id for e in again.leftovers()]
    # What was settled before the last rewrite is gone; what came after is found again
    # (settling it again changes nothing).
    assert found[0] == "kept"
    assert 1 < len(found) < 20
    assert found[1:] == [f"o-{n}" for n in range(40 - len(found) + 1, 40)]
    again.close()


def test_where_the_journal_lives(tmp_path: Path) -> None:
    beside = default_path(f"sqlite+aiosqlite:///{tmp_path}/engagement.db", "")
    assert beside == tmp_path / "engagement.db-sent.jsonl"
    assert default_path("sqlite+aiosqlite:///:memory:", "") is None
    pg = default_path("postgresql+asyncpg://u:secret@db/engagement", "")
    other = default_path("postgresql+asyncpg://u:secret@db/engagement_2", "")
    assert pg is not None
    assert other is not None
    assert pg.parent == Path("var")
    assert pg != other  # two stacks on one host never share a file
    assert "secret" not in str(pg)
    chosen = default_path("postgresql+asyncpg://u@db/engagement", "/data/journal")
    assert chosen is not None
    assert chosen.parent == Path("/data/journal")


def test_an_entry_round_trips() -> None:
    entry = Entry.of(claim("o-1", attempt=3), "250 queued")
    assert Entry(**json.loads(entry.line())) == entry  # every field is written
    assert json.loads(entry.line()) == dataclasses.asdict(entry)
    back = entry.claim()
    assert (back.outreach_id, back.attempt, back.journey, back.trigger_event_id) == (
        "o-1",
        3,
        "thank_you",
        "e-1",
    )


def _journals(directory: Path) -> list[Path]:
    return list(directory.glob("*.jsonl"))


class _DatabaseGone:
    """A group commit whose every transaction fails, as with the database away."""

    async def settle(self, _outcome: Any) -> str | None:
        raise ConnectionError("the database went away")


def _sender(db: Database, port: int, directory: Path, **overrides: Any) -> Sender:
    return Sender(
        db=db,
        settings=settings(smtp_port=port, sender_journal_dir=str(directory), **overrides),
    )


async def _accepted_then_crashed(
    db: Database, port: int, directory: Path, *customers: str, **overrides: Any
) -> None:
    """A sender hands the thank-yous over, then cannot record them and dies: the rows
    stay ``sending``, as a SIGKILL between the server's 250 and the commit leaves them."""
    for customer_id in customers or ("c-1",):
        email = f"{customer_id}@example.com"
        await handle(db, customer(customer_id, email=email), purchase(customer_id))
    crashed = _sender(db, port, directory, **overrides)
    crashed._settler = _DatabaseGone()  # type: ignore[assignment]
    with pytest.raises(ExceptionGroup):
        await crashed.run_once()
    for customer_id in customers or ("c-1",):
        row = await only_outreach(db, customer_id)
        assert (row.status, row.attempts) == ("sending", 1)
        # Long enough ago that the stalled-claim sweep puts it back for sending again.
        await set_outreach(db, customer_id, claimed_at=now() - timedelta(minutes=10))


@pytest.mark.db
async def test_a_message_accepted_before_a_crash_is_recorded_not_sent_again(
    db: Database, smtp: Smtp, tmp_path: Path
) -> None:
    port, sink = smtp
    await _accepted_then_crashed(db, port, tmp_path)
    assert len(sink.wait_for(1, timeout=5)) == 1
    restarted = _sender(db, port, tmp_path, sending_timeout_seconds=60)
    assert await restarted.run_once() == 0  # nothing to claim: the journal recorded it
    row = await only_outreach(db, "c-1")
    assert (row.status, row.attempts) == ("sent", 1)
    assert row.provider_message_id
    assert len(sink.messages) == 1
    events = [e for e in await published(db) if isinstance(e, OutreachSent)]
    assert [e.data.outreach_id for e in events] == [row.id]
    assert _journals(tmp_path) == []  # nothing left to record


@pytest.mark.db
async def test_without_the_journal_such_a_message_is_sent_twice(
    db: Database, smtp: Smtp, tmp_path: Path
) -> None:
    """The behaviour the journal prevents (at-least-once delivery, sender.py)."""
    port, sink = smtp
    await _accepted_then_crashed(db, port, tmp_path, sender_journal_enabled=False)
    restarted = _sender(
        db, port, tmp_path, sending_timeout_seconds=60, sender_journal_enabled=False
    )
    assert await restarted.run_once() == 1
    assert len(sink.wait_for(2, timeout=5)) == 2
    assert (await only_outreach(db, "c-1")).attempts == 2


@pytest.mark.db
async def test_a_sender_without_a_usable_journal_still_sends(
    db: Database, smtp: Smtp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port, sink = smtp
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    await handle(db, customer("c-1", email="lan@example.com"), purchase("c-1"))
    assert await _sender(db, port, blocker / "journal").run_once() == 1
    assert len(sink.wait_for(1, timeout=5)) == 1
    assert (await only_outreach(db, "c-1")).status == "sent"
    assert "send journal unavailable" in caplog.text


@pytest.mark.db
async def test_many_leftovers_are_recorded_a_transaction_at_a_time(
    db: Database, smtp: Smtp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port, sink = smtp
    customers = ("c-1", "c-2", "c-3")
    await _accepted_then_crashed(db, port, tmp_path, *customers)
    assert len(sink.wait_for(3, timeout=5)) == 3
    monkeypatch.setattr(sender_module, "LEFTOVERS_PER_TRANSACTION", 2)
    restarted = _sender(db, port, tmp_path, sending_timeout_seconds=60)
    transactions = 0
    settle = restarted._settle

    async def counted(outcomes: Any) -> dict[str, str | None]:
        nonlocal transactions
        transactions += 1
        return await settle(outcomes)

    restarted._settle = counted  # type: ignore[method-assign]
    assert await restarted.run_once() == 0
    assert transactions == 2
    for customer_id in customers:
        assert (await only_outreach(db, customer_id)).status == "sent"
    assert len(sink.messages) == 3


def _only_handed(directory: Path) -> None:
    """Rewrite the journal as if each message's reply had never been read: the sender
    was killed after the whole message was in the kernel's socket buffer."""
    (path,) = _journals(directory)
    lines = []
    for raw in path.read_bytes().splitlines():
        entry = json.loads(raw)
        if entry["state"] == journal_module.ACCEPTED:
            lines.append(json.dumps({**entry, "state": journal_module.HANDED, "reply": ""}))
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.db
async def test_a_message_handed_over_before_a_crash_is_recorded_in_doubt_not_sent_again(
    db: Database, smtp: Smtp, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port, sink = smtp
    await _accepted_then_crashed(db, port, tmp_path)
    assert len(sink.wait_for(1, timeout=5)) == 1
    _only_handed(tmp_path)
    restarted = _sender(db, port, tmp_path, sending_timeout_seconds=60)
    assert await restarted.run_once() == 0
    row = await only_outreach(db, "c-1")
    assert (row.status, row.attempts) == ("sent", 1)
    assert row.provider_message_id == journal_module.IN_DOUBT
    assert "1 messages were handed to the server in full" in caplog.text
    assert len(sink.messages) == 1
    assert [e.data.outreach_id for e in await published(db) if isinstance(e, OutreachSent)] == [
        row.id
    ]
    assert _journals(tmp_path) == []


@pytest.mark.db
async def test_a_message_refused_after_the_hand_over_is_retried(
    db: Database, refusing_smtp: Callable[..., int], tmp_path: Path
) -> None:
    port = refusing_smtp("451 4.3.0 try again later", "DATA", pipelining=True)
    await handle(db, customer("c-1", email="lan@example.com"), purchase("c-1"))
    sender = _sender(db, port, tmp_path)
    handed: list[str] = []
    step = sender._journal_step

    def spy(claim: Claim, note: Callable[[SendJournal], None]) -> None:
        handed.append(claim.outreach_id)
        step(claim, note)

    sender._journal_step = spy  # type: ignore[method-assign,assignment]
    assert await sender.run_once() == 1
    row = await only_outreach(db, "c-1")
    assert (row.status, row.attempts) == ("pending", 1)
    assert "451" in (row.last_error or "")
    assert handed == [row.id, row.id]  # handed over, then failed
    assert _journals(tmp_path) == []


@pytest.mark.db
@pytest.mark.parametrize("server_then", ["never answers", "closes the session"])
async def test_a_message_whose_session_ended_after_the_hand_over_is_in_doubt_not_sent_again(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture, server_then: str
) -> None:
    """The server reads the whole message, then does not answer it within the SMTP
    timeout (or drops the session): the message is recorded as sent in doubt, not sent
    again, even after the sending timeout passes."""
    script = Scripted(
        ("250 sender ok", "250 recipient ok", "354 go ahead"),
        accepted=None if server_then == "never answers" else Scripted.DROP,
    )
    async with script.listening() as port:
        await handle(db, customer("c-1", email="lan@example.com"), purchase("c-1"))
        sender = _sender(db, port, tmp_path, smtp_timeout_seconds=1, sending_timeout_seconds=2)
        assert await sender.run_once() == 1
        row = await only_outreach(db, "c-1")
        assert (row.status, row.attempts) == ("sent", 1)
        assert (row.provider_message_id or "").startswith(sender_module.IN_DOUBT_SESSION)
        assert "the session ended before its reply" in caplog.text
        await asyncio.sleep(2.5)  # past the sending timeout: nothing is put back
        assert await sender.run_once() == 0
    assert len(script.contents) == 1
    assert [e.data.outreach_id for e in await published(db) if isinstance(e, OutreachSent)] == [
        row.id
    ]
    assert _journals(tmp_path) == []


class _FirstCommitHeld:
    """The first outcome's commit waits until ``release``: the database away for longer
    than ``sending_timeout_seconds`` while the sender runs on."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.release = asyncio.Event()
        self.holding = False

    async def settle(self, outcome: Any) -> str | None:
        if not self.holding:
            self.holding = True
            await self.release.wait()
        status: str | None = await self._inner.settle(outcome)
        return status


@pytest.mark.db
async def test_a_claim_taken_back_while_its_commit_waited_is_recorded_not_sent_again(
    db: Database, smtp: Smtp, tmp_path: Path
) -> None:
    port, sink = smtp
    await handle(db, customer("c-1", email="lan@example.com"), purchase("c-1"))
    running = _sender(
        db,
        port,
        tmp_path,
        sending_timeout_seconds=1.5,
        smtp_timeout_seconds=1,
        sender_poll_interval_ms=50,
        sender_idle_poll_ms=100,
    )
    held = _FirstCommitHeld(running._settler)
    running._settler = held  # type: ignore[assignment]
    task = asyncio.create_task(running.run())
    try:
        assert len(await asyncio.to_thread(sink.wait_for, 1, 10)) == 1
        # The stalled-claim sweep puts it back and it is claimed again (attempt 2).
        await wait_until(lambda: _status(db, "c-1", ("sent", 2)), timeout=15)
        held.release.set()
        await asyncio.sleep(0.5)  # the first commit now goes through: fenced, a no-op
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert len(sink.messages) == 1
    row = await only_outreach(db, "c-1")
    assert (row.status, row.attempts) == ("sent", 2)
    assert row.provider_message_id == "Message accepted for delivery"  # the first's reply
    assert len([e for e in await published(db) if isinstance(e, OutreachSent)]) == 1
    assert _journals(tmp_path) == []


async def _status(db: Database, customer_id: str, want: tuple[str, int]) -> bool:
    row = await only_outreach(db, customer_id)
    return (row.status, row.attempts) == want
