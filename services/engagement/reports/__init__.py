"""Engagement's reports (retention, value, engagement): SQL aggregates over event time."""
