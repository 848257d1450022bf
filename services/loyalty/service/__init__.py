"""Loyalty domain logic. Takes the caller's session; flushes, never commits.

One module per concern: ``rules`` (the arithmetic), ``ledger`` (posting and lots),
``earning``, ``refunds``, ``expiry``, ``tiers``, ``redemption``, ``members``
(adjustments, merge, erasure) and ``reports``.
"""
