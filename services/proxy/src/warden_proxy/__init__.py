"""Warden proxy: the governed MCP endpoint and the single egress to upstream servers."""
