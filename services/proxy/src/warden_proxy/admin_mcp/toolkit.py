"""What every admin tool is made of: a name, schemas for its input (with limits) and its
structured output, annotations that are true of it, and a handler. Schema helpers too."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import mcp_types as types
from warden_common.contracts.credentials import NAME_PATTERN
from warden_common.contracts.registry import PROFILE_PATTERN

if TYPE_CHECKING:
    from warden_proxy.admin_mcp.calls import AdminCall

__all__ = [
    "AdminTool",
    "Handler",
    "arr",
    "boolean",
    "integer",
    "obj",
    "string",
    "CONNECTOR",
    "PROFILE",
    "TOOL",
    "READ",
    "CHANGE",
    "CHANGE_IDEMPOTENT",
    "DESTROY",
]

Handler = Callable[["AdminCall", dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class AdminTool:
    name: str
    title: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    annotations: types.ToolAnnotations
    handler: Handler = field(repr=False)

    def wire(self) -> types.Tool:
        a = self.annotations.model_copy(update={"title": self.title})
        return types.Tool(
            name=self.name,
            title=self.title,
            description=self.description,
            input_schema=self.input_schema,
            output_schema=self.output_schema,
            annotations=a,
        )


def obj(props: dict[str, Any], required: tuple[str, ...] = (), *, closed: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    if closed:
        out["additionalProperties"] = False
    return out


def string(description: str, *, max_length: int = 200, min_length: int = 1, **kw: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, "minLength": min_length, "maxLength": max_length, **kw}


def boolean(description: str, **kw: Any) -> dict[str, Any]:
    return {"type": "boolean", "description": description, **kw}


def integer(description: str, *, minimum: int, maximum: int, **kw: Any) -> dict[str, Any]:
    return {"type": "integer", "description": description, "minimum": minimum, "maximum": maximum, **kw}


def arr(items: dict[str, Any], description: str, *, max_items: int, min_items: int = 0) -> dict[str, Any]:
    return {"type": "array", "items": items, "description": description, "minItems": min_items, "maxItems": max_items}


CONNECTOR = string("the connector's name (a slug)", max_length=48, pattern=NAME_PATTERN)
PROFILE = string("a behavior profile's name", max_length=64, pattern=PROFILE_PATTERN)
TOOL = string("a registered tool's name (`<alias>__<tool>`)", max_length=128)

# Annotations, as true of each kind of tool (MCP: destructive/idempotent mean something only
# when the tool is not read-only; none of these tools reaches outside Warden but through it)
READ = types.ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
CHANGE = types.ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)
CHANGE_IDEMPOTENT = types.ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
DESTROY = types.ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
)
