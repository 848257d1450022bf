"""The retention dashboard: a page served by engagement, fed by every service's reports."""
