"""Staff pages under /admin/: the dashboard, affiliates, programs and their settings, people, conversions, reports."""
