"""The date range of a report: ``from`` inclusive, ``to`` exclusive, whole UTC days.

Months are counted as integers (``year * 12 + month - 1``) so that SQL can add and
subtract them; they are shown as "YYYY-MM".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from shared.http import AppError

MAX_DAYS = 3653  # ten years


class InvalidRange(AppError):
    status_code = 422
    code = "invalid_range"


@dataclass(frozen=True)
class Period:
    start: date
    end: date

    @property
    def start_at(self) -> datetime:
        return midnight(self.start)

    @property
    def end_at(self) -> datetime:
        return midnight(self.end)

    @property
    def first_month(self) -> int:
        return month_index(self.start)

    @property
    def last_month(self) -> int:
        """The month holding the last day of the range."""
        return month_index(date.fromordinal(self.end.toordinal() - 1))

    def months(self) -> list[int]:
        return list(range(self.first_month, self.last_month + 1))


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def month_index(day: date) -> int:
    return day.year * 12 + day.month - 1


def month_start(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


def month_label(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def period(start: date | None, end: date | None, *, today: date) -> Period:
    """The requested range, or the 12 whole months before this one up to next month."""
    this_month = month_index(today)
    start = start or month_start(this_month - 12)
    end = end or month_start(this_month + 1)
    if start >= end:
        raise InvalidRange(f"'from' ({start}) must be before 'to' ({end})")
    if (end - start).days > MAX_DAYS:
        raise InvalidRange(f"the range {start}..{end} is longer than ten years")
    return Period(start, end)
