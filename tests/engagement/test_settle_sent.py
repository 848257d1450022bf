"""Recording a group of sent messages in one statement (repository.settle_sent)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.engagement import repository
from services.engagement.repository import _settle_sent_by_arrays, _settle_sent_by_json
from shared.db import Database
from tests.engagement.support import customer, handle, only_outreach, purchase, set_outreach

pytestmark = pytest.mark.db

SENT_AT = datetime(2026, 12, 6, 14, 0, tzinfo=UTC)


async def test_only_claims_still_held_are_settled_each_with_its_reply(db: Database) -> None:
    ids = {}
    states = (("c-1", 1, "sending"), ("c-2", 2, "sending"), ("c-3", 1, "sent"))
    for name, attempts, status in states:
        await handle(db, customer(name, email=f"{name}@example.com"), purchase(name))
        await set_outreach(db, name, status=status, attempts=attempts)
        ids[name] = (await only_outreach(db, name)).id
    replies = {
        (ids["c-1"], 1): 'queued as "A1" (Đã nhận) ✓',
        (ids["c-2"], 1): "taken over since: attempt 2 holds it",
        (ids["c-3"], 1): "already sent",
    }
    async with db.unit_of_work() as session:
        settled = await repository.settle_sent(session, replies=replies, sent_at=SENT_AT)
    assert settled == {ids["c-1"]}
    first = await only_outreach(db, "c-1")
    assert (first.status, first.provider_message_id) == ("sent", 'queued as "A1" (Đã nhận) ✓')
    assert first.sent_at is not None
    assert first.sent_at.replace(tzinfo=UTC) == SENT_AT
    second = await only_outreach(db, "c-2")
    assert (second.status, second.attempts, second.provider_message_id) == ("sending", 2, None)
    assert (await only_outreach(db, "c-3")).provider_message_id is None


async def test_on_sqlite_each_row_given_is_looked_up_by_its_key(db: Database) -> None:
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's statement")
    statement = str(_settle_sent_by_json().compile(dialect=db.engine.dialect))
    params = ("sent", None, "$[0]", "$[1]", "$[2]", "[]")
    async with db.unit_of_work() as session:
        connection = await session.connection()
        plan = (await connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)).all()
    steps = [str(tuple(row)[-1]) for row in plan]  # id, parent, notused, detail
    assert steps[0].startswith("SCAN"), steps  # the JSON rows drive the update
    assert any(s.startswith("SEARCH outreach USING INDEX sqlite_autoindex") for s in steps), steps


async def test_on_postgresql_each_row_given_is_looked_up_by_its_key(db: Database) -> None:
    """Statistics taken when nothing was claimed say that few rows are (one, to the
    planner); with a backlog claimed since, the settled rows are still looked up by key,
    not the claimed ones scanned and each matched against the group."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's statement")
    compiled = _settle_sent_by_arrays().compile(dialect=db.engine.dialect)
    order = compiled.positiontup or []
    values = {
        "id_list": "'{o-10,o-20,o-30}'",
        "attempt_list": "'{1,1,1}'",
        "reply_list": "'{a,b,c}'",
        "sent_time": "now()",
        "status": "'sent'",
    }
    assert set(order) <= set(values), order
    async with db.engine.connect() as conn:
        await conn.exec_driver_sql(
            "INSERT INTO outreach (id, customer_id, journey, channel, template, dedupe_key,"
            " status, attempts, context, due_at) SELECT 'o-' || g, 'c-' || g, 'thank_you',"
            " 'email', 't', 'k-' || g, 'sent', 1, '{}', now() FROM generate_series(1, 3000) g"
        )
        await conn.exec_driver_sql("ANALYZE outreach")
        await conn.exec_driver_sql("UPDATE outreach SET status = 'sending' WHERE id <= 'o-5'")
        await conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        await conn.exec_driver_sql(f"PREPARE settle AS {compiled}")
        arguments = ", ".join(values[name] for name in order)
        plan = (await conn.exec_driver_sql(f"EXPLAIN EXECUTE settle({arguments})")).all()
        text = "\n".join(str(row[0]) for row in plan)
        assert "pk_outreach" in text, text
        assert "ix_outreach_status_due_at" not in text, text
        settled = (await conn.exec_driver_sql(f"EXECUTE settle({arguments})")).scalars().all()
        assert sorted(settled) == ["o-10", "o-20", "o-30"]
        await conn.rollback()
