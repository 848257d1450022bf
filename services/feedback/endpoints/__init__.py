"""Thin routes, one module per resource."""

from services.feedback.endpoints import analytics, complaints, reports, responses, surveys

routers = [surveys.router, responses.router, complaints.router, analytics.router, reports.router]
