"""Reporting: tables and figures drawn from saved run folders only (the one place matplotlib is used)."""
