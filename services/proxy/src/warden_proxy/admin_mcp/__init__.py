"""Warden's own admin operations as MCP tools, at /mcp/admin on the proxy."""

from warden_proxy.admin_mcp.apis import AdminApis
from warden_proxy.admin_mcp.auth import AdminAuth
from warden_proxy.admin_mcp.endpoint import ADMIN_TOOLS, AdminMcp

__all__ = ["ADMIN_TOOLS", "AdminApis", "AdminAuth", "AdminMcp"]
