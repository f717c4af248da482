"""What every service's OpenAPI document says about errors and sign-in, so clients can be
generated from it: the one error model (`{"error": {code, message, details}}`) instead of
FastAPI's 422 `HTTPValidationError` (Warden answers 400), the status codes each route really
answers, and the bearer security scheme on the routes that want one.

Which codes a route answers follows from what it is (`tests/e2e/test_openapi_conformance.py`
checks the documents against the running services with schemathesis):
400 when it takes parameters or a body; 401 and 403 when it wants a bearer token; 404 when
its path names something; 409 when it changes state; 413 where a body has a size limit;
500, 502, 503 and 504 everywhere a dependency (NATS, Postgres, an upstream) is involved.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from warden_common.contracts.base import ErrorCode

__all__ = ["ERROR_SCHEMA", "document_errors"]

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "enum": [c.value for c in ErrorCode]},
                "message": {"type": "string", "description": "for a person to act on; never a secret"},
                "details": {"type": "object", "additionalProperties": True},
            },
        }
    },
}

_WORDS = {
    400: "invalid input (`details.fields` names each field)",
    401: "no or wrong bearer token",
    403: "the token may not do this (fail closed)",
    404: "not found",
    409: "conflicts with the current state",
    413: "too large",
    500: "internal error (the message carries the trace id)",
    502: "an upstream MCP server answered badly or not at all (`upstream_error`)",
    503: "a dependency is unavailable; retry later",
    504: "a dependency did not answer in time",
}
_CHANGES = {"post", "put", "patch", "delete"}
_METHODS = _CHANGES | {"get", "head", "options"}


def document_errors(
    app: FastAPI,
    *,
    secured: Callable[[str], bool] = lambda path: path.startswith("/v1/"),
    scheme_description: str = "the admin token (WARDEN_ADMIN_TOKEN), or an agent key where a route says so",
    extra: dict[tuple[str, str], list[int]] | None = None,
) -> None:
    """Post-process `app`'s OpenAPI document (built once, on first request). `extra` adds
    codes to single operations: {("post", "/v1/tools/{name}/call"): [413]}."""
    build = app.openapi
    more = {(m.lower(), p): set(c) for (m, p), c in (extra or {}).items()}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        comps = schema.setdefault("components", {})
        schemas = comps.setdefault("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas["Error"] = ERROR_SCHEMA
        comps.setdefault("securitySchemes", {})["bearer"] = {
            "type": "http",
            "scheme": "bearer",
            "description": scheme_description,
        }
        ref = {"$ref": "#/components/schemas/Error"}
        for path, item in schema.get("paths", {}).items():
            for method, op in item.items():
                if method not in _METHODS:
                    continue
                responses = op.setdefault("responses", {})
                responses.pop("422", None)
                params = op.get("parameters", [])
                codes = {500, 502, 503, 504}
                if params or "requestBody" in op:
                    codes.add(400)
                if any(p.get("in") == "path" for p in params):
                    codes.add(404)
                if method in _CHANGES:
                    codes.add(409)
                if secured(path):
                    codes |= {401, 403}
                    op["security"] = [{"bearer": []}]
                codes |= more.get((method, path), set())
                for code in sorted(codes):
                    responses.setdefault(
                        str(code), {"description": _WORDS[code], "content": {"application/json": {"schema": ref}}}
                    )
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
