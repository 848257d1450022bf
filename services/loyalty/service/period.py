"""The date range a report covers: ``from`` inclusive, ``to`` exclusive, whole UTC days."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from shared.http import AppError

MAX_DAYS = 3653  # ten years, leap days included


class PeriodInvalid(AppError):
    status_code = 422
    code = "invalid_period"


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


@dataclass(frozen=True)
class Period:
    start: date
    end: date

    @classmethod
    def of(cls, start: date | None, end: date | None, *, today: date) -> Period:
        """The range asked for; what is left out defaults to the 12 months before this one
        and the current month (up to the first day of the next)."""
        this_month = today.replace(day=1)
        start = start if start is not None else _add_months(this_month, -12)
        end = end if end is not None else _add_months(this_month, 1)
        if start >= end:
            raise PeriodInvalid(f"from ({start}) must be before to ({end})")
        if (end - start).days > MAX_DAYS:
            raise PeriodInvalid(f"a report covers at most 10 years ({MAX_DAYS} days)")
        return cls(start, end)

    @property
    def starts_at(self) -> datetime:
        return datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)

    @property
    def ends_at(self) -> datetime:
        return datetime(self.end.year, self.end.month, self.end.day, tzinfo=UTC)

    def months(self) -> list[str]:
        """Every month the range touches, as YYYY-MM."""
        months, month = [], self.start.replace(day=1)
        while month < self.end:
            months.append(month.strftime("%Y-%m"))
            month = _add_months(month, 1)
        return months
