"""Turn a raw transaction log into the RFM summary the BG/NBD and Gamma-Gamma models use.

Conventions follow the CDNOW analyses of Fader, Hardie & Lee:

* time is measured in whole days, and all purchases a customer makes on the same day are
  collapsed into one transaction whose amount is the day's total;
* the customer's first (trial) day starts their clock and is not a repeat purchase;
* ``x`` is the number of *repeat* purchase days up to and including ``calibration_end``,
  ``t_x`` the time from the first to the last purchase day and ``T`` the time from the first
  purchase day to ``calibration_end``, both in ``unit_days`` (7 = weeks);
* ``monetary_value`` is the mean amount over the repeat purchase days (0.0 when ``x == 0``).

Customers whose first purchase is after ``calibration_end`` are not in the summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_DAY = np.timedelta64(1, "D")


@dataclass(frozen=True)
class CustomerSummary:
    """Per-customer calibration summary, one row per customer sorted by ``customer_ids``."""

    customer_ids: npt.NDArray[Any]
    x: FloatArray
    t_x: FloatArray
    T: FloatArray
    monetary_value: FloatArray

    @property
    def n_customers(self) -> int:
        return int(self.x.shape[0])


def _to_days(values: npt.ArrayLike) -> IntArray:
    """Whole day numbers: ``datetime64`` values by calendar day, numbers by ``floor``."""
    arr = np.asarray(values)
    if np.issubdtype(arr.dtype, np.datetime64):
        return np.asarray(arr.astype("datetime64[D]").astype(np.int64), dtype=np.int64)
    return np.asarray(np.floor(arr.astype(np.float64)), dtype=np.int64)


def _collapse_days(
    codes: IntArray, days: IntArray, amounts: FloatArray
) -> tuple[IntArray, IntArray, FloatArray]:
    """Merge purchases made by the same customer on the same day (amounts are summed)."""
    order = np.lexsort((days, codes))
    codes, days, amounts = codes[order], days[order], amounts[order]
    new_group = np.ones(codes.shape[0], dtype=bool)
    new_group[1:] = (codes[1:] != codes[:-1]) | (days[1:] != days[:-1])
    starts = np.flatnonzero(new_group)
    return codes[starts], days[starts], np.add.reduceat(amounts, starts)


def summarise(
    customer_ids: npt.ArrayLike,
    timestamps: npt.ArrayLike,
    amounts: npt.ArrayLike,
    calibration_end: np.datetime64 | float,
    unit_days: float = 7.0,
) -> CustomerSummary:
    """Summarise transactions into frequency/recency/age/monetary value per customer.

    ``timestamps`` and ``calibration_end`` are either ``datetime64`` values or day numbers
    (floats are floored to whole days); the day of ``calibration_end`` is included and
    purchases after it are ignored.
    """
    ids = np.asarray(customer_ids)
    days = _to_days(timestamps)
    values = np.asarray(amounts, dtype=np.float64)
    if not ids.shape == days.shape == values.shape or ids.ndim != 1:
        raise ValueError("customer_ids, timestamps and amounts must be 1-D and equally long")
    if unit_days <= 0:
        raise ValueError("unit_days must be positive")
    end = int(_to_days(np.asarray([calibration_end]))[0])
    keep = days <= end
    unique_ids, codes = np.unique(ids[keep], return_inverse=True)
    codes_d, days_d, amounts_d = _collapse_days(codes.astype(np.int64), days[keep], values[keep])
    return _per_customer(unique_ids, codes_d, days_d, amounts_d, end, unit_days)


def _per_customer(
    unique_ids: npt.NDArray[Any],
    codes: IntArray,
    days: IntArray,
    amounts: FloatArray,
    end: int,
    unit_days: float,
) -> CustomerSummary:
    """Reduce day-level purchases (sorted by customer, then day) to one row per customer."""
    n = unique_ids.shape[0]
    n_days = np.bincount(codes, minlength=n)
    last_idx = np.cumsum(n_days) - 1
    first_idx = last_idx - n_days + 1
    first_day, last_day = days[first_idx], days[last_idx]
    repeat_total = np.bincount(codes, weights=amounts, minlength=n) - amounts[first_idx]
    x = (n_days - 1).astype(np.float64)
    monetary = np.divide(repeat_total, x, out=np.zeros(n), where=x > 0)
    return CustomerSummary(
        customer_ids=unique_ids,
        x=x,
        t_x=(last_day - first_day) / unit_days,
        T=(end - first_day) / unit_days,
        monetary_value=monetary,
    )
