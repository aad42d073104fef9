"""Reporting: tables and figures drawn from saved run folders only.

The one place matplotlib is imported.
"""
