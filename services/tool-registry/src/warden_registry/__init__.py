"""Warden tool registry: catalog, grants, tool search."""
