"""An upstream MCP server with every feature the conformance suite's server scenarios exercise.

    python tests/conformance/everything_upstream.py [PORT]   # streamable HTTP at /mcp

Built with the `mcp` package's low-level `Server`, from the scenarios' stated expectations:
tools (text, image, audio, embedded resource, mixed content, an error, logging, progress,
sampling, elicitation, a JSON Schema 2020-12 input schema), static and templated resources
with subscriptions, prompts (plain, with arguments, with an embedded resource, with an
image) and argument completion. Warden puts it behind its MCP endpoint as a connector, so
the suite measures what the gateway passes through. The e2e tests reuse `build_server()`.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

__all__ = ["PNG_1X1", "WAV_SILENCE", "build_server"]

# a 1x1 red PNG and a 1-sample WAV, base64
PNG_1X1 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV_SILENCE = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQIAAAAAAA=="

_EMPTY: dict[str, Any] = {"type": "object", "properties": {}}
_TEMPLATE = re.compile(r"^test://template/([^/]+)/data$")


def _tool(name: str, description: str, schema: dict[str, Any] | None = None, **ann: Any) -> types.Tool:
    return types.Tool.model_validate(
        {
            "name": name,
            "description": description,
            "inputSchema": schema or _EMPTY,
            "annotations": ann or None,
        }
    )


def _string_args(*names: str) -> dict[str, Any]:
    return {"type": "object", "properties": {n: {"type": "string"} for n in names}, "required": list(names)}


TOOLS = [
    _tool("test_simple_text", "Returns a simple text response", readOnlyHint=True),
    _tool("test_image_content", "Returns a 1x1 PNG image", readOnlyHint=True),
    _tool("test_audio_content", "Returns a tiny WAV clip", readOnlyHint=True),
    _tool("test_embedded_resource", "Returns an embedded text resource", readOnlyHint=True),
    _tool("test_multiple_content_types", "Returns text, an image and a resource", readOnlyHint=True),
    _tool("test_error_handling", "Always fails, as a tool error", readOnlyHint=True),
    _tool("test_tool_with_logging", "Sends three log messages while it runs", readOnlyHint=True),
    _tool("test_tool_with_progress", "Reports progress 0, 50 and 100 of 100", readOnlyHint=True),
    _tool("test_sampling", "Asks the client's LLM to answer a prompt", _string_args("prompt"), readOnlyHint=True),
    _tool("test_elicitation", "Asks the user for a username and an email", _string_args("message")),
    _tool("test_elicitation_sep1034_defaults", "Elicits a form whose fields all have defaults"),
    _tool("test_elicitation_sep1330_enums", "Elicits a form with every enum variant"),
    _tool("test_reconnection", "Returns after a short pause", readOnlyHint=True),
    _tool(
        "json_schema_2020_12_tool",
        "Tool with JSON Schema 2020-12 features",
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {
                "address": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}
            },
            "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
            "additionalProperties": False,
        },
        readOnlyHint=True,
    ),
]

RESOURCES = [
    types.Resource(
        uri="test://static-text",
        name="static-text",
        description="A static text resource",
        mime_type="text/plain",
    ),
    types.Resource(
        uri="test://static-binary",
        name="static-binary",
        description="A static binary resource (a PNG)",
        mime_type="image/png",
    ),
    types.Resource(
        uri="test://watched-resource",
        name="watched-resource",
        description="A resource clients may subscribe to",
        mime_type="text/plain",
    ),
]
TEMPLATES = [
    types.ResourceTemplate(
        uri_template="test://template/{id}/data",
        name="template-data",
        description="Data for an id",
        mime_type="application/json",
    )
]

PROMPTS = [
    types.Prompt(name="test_simple_prompt", description="A simple prompt without arguments"),
    types.Prompt(
        name="test_prompt_with_arguments",
        description="A prompt with two required arguments",
        arguments=[
            types.PromptArgument(name="arg1", description="First test argument", required=True),
            types.PromptArgument(name="arg2", description="Second test argument", required=True),
        ],
    ),
    types.Prompt(
        name="test_prompt_with_embedded_resource",
        description="A prompt that embeds a resource",
        arguments=[types.PromptArgument(name="resourceUri", description="URI of the resource", required=True)],
    ),
    types.Prompt(name="test_prompt_with_image", description="A prompt with an image"),
]

_SEP1034 = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "User name", "default": "John Doe"},
        "age": {"type": "integer", "description": "User age", "default": 30},
        "score": {"type": "number", "description": "User score", "default": 95.5},
        "status": {
            "type": "string",
            "description": "User status",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "description": "Verification status", "default": True},
    },
    "required": [],
}
_SEP1330 = {
    "type": "object",
    "properties": {
        "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
        "titledSingle": {
            "type": "string",
            "oneOf": [
                {"const": "value1", "title": "First Option"},
                {"const": "value2", "title": "Second Option"},
                {"const": "value3", "title": "Third Option"},
            ],
        },
        "legacyEnum": {
            "type": "string",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
        "titledMulti": {
            "type": "array",
            "items": {
                "anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"},
                ]
            },
        },
    },
    "required": [],
}


def _text(text: str) -> types.TextContent:
    return types.TextContent(type="text", text=text)


def _image() -> types.ImageContent:
    return types.ImageContent(type="image", data=PNG_1X1, mime_type="image/png")


def _result(*content: Any, is_error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=list(content), is_error=is_error)


def build_server() -> Server[Any]:
    subscriptions: set[str] = set()
    sessions: dict[str, Any] = {}  # uri -> the subscriber's session, to send updates from tests

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=TOOLS)

    async def elicit(ctx: Any, message: str, schema: dict[str, Any]) -> types.ElicitResult:
        caps = ctx.session.client_capabilities
        if caps is None or caps.elicitation is None:
            raise MCPError(types.INVALID_REQUEST, "the client does not support elicitation")
        return await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        args = params.arguments or {}
        name = params.name
        if name == "test_simple_text":
            return _result(_text("This is a simple text response for testing."))
        if name == "test_image_content":
            return _result(_image())
        if name == "test_audio_content":
            return _result(types.AudioContent(type="audio", data=WAV_SILENCE, mime_type="audio/wav"))
        if name == "test_embedded_resource":
            res = types.TextResourceContents(
                uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."
            )
            return _result(types.EmbeddedResource(type="resource", resource=res))
        if name == "test_multiple_content_types":
            res = types.TextResourceContents(
                uri="test://mixed-content-resource",
                mime_type="application/json",
                text=json.dumps({"test": "data", "value": 123}),
            )
            return _result(
                _text("Multiple content types test:"), _image(), types.EmbeddedResource(type="resource", resource=res)
            )
        if name == "test_error_handling":
            return _result(_text("This tool intentionally returns an error for testing"), is_error=True)
        if name == "test_tool_with_logging":
            for i, msg in enumerate(("Tool execution started", "Tool processing data", "Tool execution completed")):
                if i:
                    await asyncio.sleep(0.05)
                await ctx.session.send_log_message("info", msg, "everything", related_request_id=ctx.request_id)
            return _result(_text("Tool with logging executed successfully"))
        if name == "test_tool_with_progress":
            meta: Any = ctx.meta or {}
            token = meta.get("progress_token", meta.get("progressToken")) if isinstance(meta, dict) else None
            for i, p in enumerate((0, 50, 100)):
                if i:
                    await asyncio.sleep(0.05)
                if token is not None:
                    await ctx.session.send_progress_notification(token, p, 100, related_request_id=ctx.request_id)
            return _result(_text("Tool with progress executed successfully"))
        if name == "test_sampling":
            caps = ctx.session.client_capabilities
            if caps is None or caps.sampling is None:
                return _result(_text("the client does not support sampling"), is_error=True)
            answer = await ctx.session.create_message(
                [types.SamplingMessage(role="user", content=_text(str(args.get("prompt", ""))))],
                max_tokens=100,
                related_request_id=ctx.request_id,
            )
            content = answer.content
            said = getattr(content, "text", None) or json.dumps(answer.model_dump(mode="json", exclude_none=True))
            return _result(_text(f"LLM response: {said}"))
        if name == "test_elicitation":
            schema = {
                "type": "object",
                "properties": {
                    "username": {"type": "string", "description": "User's response"},
                    "email": {"type": "string", "description": "User's email address"},
                },
                "required": ["username", "email"],
            }
            r = await elicit(ctx, str(args.get("message", "")), schema)
            return _result(_text(f"User response: action={r.action}, content={json.dumps(r.content or {})}"))
        if name in ("test_elicitation_sep1034_defaults", "test_elicitation_sep1330_enums"):
            schema = _SEP1034 if name.endswith("defaults") else _SEP1330
            r = await elicit(ctx, "Please review and submit the form", schema)
            return _result(_text(f"Elicitation completed: action={r.action}, content={json.dumps(r.content or {})}"))
        if name == "test_reconnection":
            await asyncio.sleep(0.1)
            return _result(_text("Reconnection test completed successfully"))
        if name == "json_schema_2020_12_tool":
            return _result(_text(json.dumps(args)))
        raise MCPError(types.INVALID_PARAMS, f"unknown tool: {name}")

    async def list_resources(ctx: Any, params: Any) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=RESOURCES)

    async def list_templates(ctx: Any, params: Any) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=TEMPLATES)

    async def read_resource(ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        uri = str(params.uri)
        contents: list[Any]
        if uri == "test://static-text":
            contents = [
                types.TextResourceContents(
                    uri=uri, mime_type="text/plain", text="This is the content of the static text resource."
                )
            ]
        elif uri == "test://static-binary":
            contents = [types.BlobResourceContents(uri=uri, mime_type="image/png", blob=PNG_1X1)]
        elif uri == "test://watched-resource":
            contents = [types.TextResourceContents(uri=uri, mime_type="text/plain", text="Watched resource content.")]
        elif m := _TEMPLATE.match(uri):
            ident = m.group(1)
            body = {"id": ident, "templateTest": True, "data": f"Data for ID: {ident}"}
            contents = [types.TextResourceContents(uri=uri, mime_type="application/json", text=json.dumps(body))]
        else:
            raise MCPError(-32002, f"resource not found: {uri}")
        return types.ReadResourceResult(contents=contents)

    async def subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
        subscriptions.add(str(params.uri))
        sessions[str(params.uri)] = ctx.session
        return types.EmptyResult()

    async def unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        subscriptions.discard(str(params.uri))
        sessions.pop(str(params.uri), None)
        return types.EmptyResult()

    async def list_prompts(ctx: Any, params: Any) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=PROMPTS)

    async def get_prompt(ctx: Any, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        args = params.arguments or {}
        name = params.name

        def user(content: Any) -> types.PromptMessage:
            return types.PromptMessage(role="user", content=content)

        if name == "test_simple_prompt":
            return types.GetPromptResult(messages=[user(_text("This is a simple prompt for testing."))])
        if name == "test_prompt_with_arguments":
            missing = [a for a in ("arg1", "arg2") if a not in args]
            if missing:
                raise MCPError(types.INVALID_PARAMS, f"missing arguments: {', '.join(missing)}")
            text = f"Prompt with arguments: arg1='{args['arg1']}', arg2='{args['arg2']}'"
            return types.GetPromptResult(messages=[user(_text(text))])
        if name == "test_prompt_with_embedded_resource":
            uri = args.get("resourceUri")
            if not uri:
                raise MCPError(types.INVALID_PARAMS, "missing argument: resourceUri")
            res = types.TextResourceContents(
                uri=uri, mime_type="text/plain", text="Embedded resource content for testing."
            )
            return types.GetPromptResult(
                messages=[
                    user(types.EmbeddedResource(type="resource", resource=res)),
                    user(_text("Please process the embedded resource above.")),
                ]
            )
        if name == "test_prompt_with_image":
            return types.GetPromptResult(messages=[user(_image()), user(_text("Please analyze the image above."))])
        raise MCPError(types.INVALID_PARAMS, f"unknown prompt: {name}")

    words = ["paris", "park", "party", "test", "testing", "tested"]

    async def complete(ctx: Any, params: types.CompleteRequestParams) -> types.CompleteResult:
        prefix = params.argument.value
        values = [w for w in words if w.startswith(prefix)]
        return types.CompleteResult(completion=types.Completion(values=values, total=len(values), has_more=False))

    server: Server[Any] = Server(
        "everything-upstream",
        version="1.0.0",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read_resource,
        on_subscribe_resource=subscribe,
        on_unsubscribe_resource=unsubscribe,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        on_completion=complete,
    )

    async def set_level(ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
        return types.EmptyResult()

    # registered directly: the constructor argument warns that logging is deprecated in 2026-07-28
    server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, set_level)
    server.subscriptions = subscriptions  # type: ignore[attr-defined] - for tests to look at
    server.subscriber_sessions = sessions  # type: ignore[attr-defined]
    return server


if __name__ == "__main__":
    import uvicorn

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    uvicorn.run(build_server().streamable_http_app(), host="127.0.0.1", port=port, log_level="warning")
