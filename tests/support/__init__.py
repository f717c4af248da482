"""Test support shared by the cross-service tests: real NATS, real Postgres, real MCP servers."""
