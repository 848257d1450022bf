"""tools.import_history: CSV rows to purchase.completed events (the broker path is in
test_app.py, which imports a history through the real broker into the running app)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from tools import import_history
from tools.import_history import BadRow, read_rows, to_events


def test_a_headed_csv_in_any_column_order() -> None:
    lines = ["amount,customer,date,currency", "12.50,c-1,2024-03-31,VND", "3,c-2,20240401,"]
    rows = read_rows(lines, "EUR")
    assert [(r.customer, r.amount, r.currency) for r in rows] == [
        ("c-1", Decimal("12.50"), "VND"),
        ("c-2", Decimal("3"), "EUR"),
    ]
    assert rows[0].when == datetime(2024, 3, 31, 12, tzinfo=UTC)
    assert rows[1].when == datetime(2024, 4, 1, 12, tzinfo=UTC)


def test_a_plain_csv_with_times_keeps_their_offset() -> None:
    [row] = read_rows(["c-9,2024-03-31T23:30:00+07:00,20.00"], "EUR")
    assert row.when.utcoffset() == timedelta(hours=7)
    [event] = to_events([row], source="/import/test")
    assert event.time.date() == datetime(2024, 3, 31, tzinfo=timezone(timedelta(hours=7))).date()
    assert (event.subject, event.data.total.amount, event.data.total.currency) == (
        "c-9",
        Decimal("20.00"),
        "EUR",
    )


def test_ids_are_deterministic_and_identical_rows_stay_distinct() -> None:
    lines = ["c-1,2024-01-02,5", "c-1,2024-01-02,5", "c-2,2024-01-02,5"]
    first = to_events(read_rows(lines, "EUR"), source="/s")
    again = to_events(read_rows(lines, "EUR"), source="/s")
    assert [e.id for e in first] == [e.id for e in again]
    assert len({e.id for e in first}) == 3
    assert len({e.data.purchase_id for e in first}) == 3


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("c-1,yesterday,5", "line 2: Invalid isoformat"),
        ("c-1,2024-01-02,five", "line 2"),
        ("c-1,2024-01-02T10:00:00,5", "offset"),
        ("c-1,2024-01-02,-5", "line 2: Input should be greater than or equal to 0"),
        ("bad customer!,2024-01-02,5", "line 2: String should match pattern"),
        (",2024-01-02,5", "needs customer, date and amount"),
    ],
)
def test_bad_rows_name_their_line(line: str, reason: str) -> None:
    with pytest.raises(BadRow, match=reason):
        to_events(read_rows(["c-0,2024-01-01,1", line], "EUR"), source="/s")


def test_the_command_sends_nothing_when_a_row_is_bad(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_file = tmp_path / "h.csv"
    csv_file.write_text("customer,date,amount\nc-1,2024-01-02,5\nc-2,2024-13-02,5\n")
    # The broker address is unreachable on purpose: validation fails before any connection.
    assert import_history.main([str(csv_file), "--bootstrap", "127.0.0.1:1"]) == 2
    assert "line 3" in capsys.readouterr().err
    assert import_history.main([str(tmp_path / "missing.csv"), "--dry-run"]) == 2
    assert "No such file" in capsys.readouterr().err
