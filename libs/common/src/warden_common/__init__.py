"""Warden's shared contracts and plumbing. Services import this package only."""

__version__ = "0.1.0"
