"""Warden command line: `warden run` (embedded) and admin commands."""
