"""Warden connectors service: OAuth and token custody."""
