"""Tables of the churn/CLV part of engagement (registered on engagement's Base)."""

from __future__ import annotations
