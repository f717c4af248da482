"""Warden console: the web UI for admins, SREs and end users (a thin edge, owns no data)."""
