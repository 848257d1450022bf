"""Churn risk and customer lifetime value: purchase statistics, the fitted
BG/NBD + Gamma-Gamma models (``services.engagement.scoring``), scores and reasons."""
