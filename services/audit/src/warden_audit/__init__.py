"""Warden audit: every event into Postgres exactly once, query API and live tail."""
