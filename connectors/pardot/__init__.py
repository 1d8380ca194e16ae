"""Pardot (Account Engagement) API v5: prospects, visitor activities, lists."""
