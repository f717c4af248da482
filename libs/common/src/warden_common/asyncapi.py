"""The AsyncAPI 3.0 document of Warden's NATS subjects, generated from `warden_common.contracts`.

`warden asyncapi` writes it to `docs/asyncapi.json`; a test fails when the checked-in file
differs from `build()`, so the document cannot drift from the code. It is written from
Warden's side (`receive`: Warden takes the message; `send`: Warden publishes it) and covers
what internal services use (tool calls, durable calls and their results, the event stream)
and, tagged `warden-internal`, the request/reply subjects between Warden's own services
(`Subject` constants), which NATS permissions allow to no other user. Every message schema is
the pydantic model's JSON schema; a request/reply answer is `Reply[T]`: exactly one of
`result` or `error`.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from warden_common.contracts import base, calls, credentials, events, registry
from warden_common.contracts.base import VERSION, Reply, Subject

__all__ = ["build", "render"]

ROOT = "warden"
_TRACE = {"type": "string", "description": "W3C trace context (`00-<trace id>-<span id>-01`); optional"}
_CALLER = {"type": "string", "maxLength": 200, "description": "what the caller says it is (logs only, not identity)"}
_MSG_ID = {
    "type": "string",
    "description": "`<profile>:<idempotency_key>`: JetStream de-duplicates a resubmission",
}
_PARAMS = {
    "profile": {"description": "the profile whose tools are called (NATS permissions decide who may)"},
    "caller": {"description": "the calling service's own NATS user: the server lets it publish only there"},
    "keyDigest": {"description": "the first 40 hex digits of the SHA-256 of the idempotency key"},
    "source": {"description": "the service that emitted the event", "enum": [s.value for s in events.Service]},
    "type": {"description": "the event type, e.g. `tool.called` (dotted)"},
}


def _subjects() -> list[Subject[Any, Any]]:
    found: dict[str, Subject[Any, Any]] = {}
    for module in (calls, credentials, registry, events, base):
        for value in vars(module).values():
            if isinstance(value, Subject):
                found[value.name] = value
    return [found[k] for k in sorted(found)]


def _reply(result: type[BaseModel]) -> type[BaseModel]:
    return Reply[result]  # type: ignore[valid-type]


def _camel(name: str) -> str:
    head, *rest = name.replace("_", ".").split(".")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def build(root: str = ROOT) -> dict[str, Any]:
    """The document, as a dict with a stable order (so its JSON diffs cleanly)."""
    pre = f"{root}.{VERSION}"
    internal = _subjects()
    models: list[type[BaseModel]] = [
        calls.ToolCall,
        Reply[calls.ToolCallResult],
        calls.DurableCall,
        calls.DurableResult,
        calls.DurableStatus,
        Reply[calls.DurableResult],
        events.Event,
    ]
    for s in internal:
        models += [s.request, _reply(s.result)]
    seen: list[type[BaseModel]] = []
    for m in models:
        if m not in seen:
            seen.append(m)
    keys, defs = models_json_schema([(m, "validation") for m in seen], ref_template="#/components/schemas/{model}")
    name = {m: keys[(m, "validation")]["$ref"].rsplit("/", 1)[-1] for m in seen}

    messages: dict[str, Any] = {}

    def message(model: type[BaseModel], headers: dict[str, Any] | None = None, summary: str | None = None) -> str:
        key = name[model]
        if key not in messages:
            doc: dict[str, Any] = {"name": key, "contentType": "application/json"}
            text = summary or (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
            if text and not text.startswith("!!!") and model.__module__.startswith("warden_common"):
                doc["summary"] = text
            props = {"traceparent": _TRACE} | (headers or {})
            doc["headers"] = {"type": "object", "properties": props}
            doc["payload"] = {"$ref": f"#/components/schemas/{key}"}
            messages[key] = doc
        return key

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}

    def channel(key: str, address: str | None, msgs: list[str], description: str, tags: list[str]) -> None:
        ch: dict[str, Any] = {"address": address, "description": description}
        if address:
            params = [p.strip("{}") for p in address.split(".") if p.startswith("{")]
            if params:
                ch["parameters"] = {p: _PARAMS[p] for p in params}
        ch["messages"] = {m: {"$ref": f"#/components/messages/{m}"} for m in msgs}
        ch["tags"] = [{"name": t} for t in tags]
        channels[key] = ch

    def operation(
        key: str, action: str, chan: str, msgs: list[str], summary: str, reply: tuple[str, list[str]] | None = None
    ) -> None:
        op: dict[str, Any] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{chan}"},
            "summary": summary,
            "messages": [{"$ref": f"#/channels/{chan}/messages/{m}"} for m in msgs],
        }
        if reply:
            rchan, rmsgs = reply
            op["reply"] = {
                "channel": {"$ref": f"#/channels/{rchan}"},
                "messages": [{"$ref": f"#/channels/{rchan}/messages/{m}"} for m in rmsgs],
            }
        operations[key] = op

    inbox = "replyInbox"
    caller_h = {"Warden-Caller": _CALLER}

    call = message(calls.ToolCall, caller_h)
    call_reply = message(Reply[calls.ToolCallResult])
    durable = message(calls.DurableCall, caller_h | {"Nats-Msg-Id": _MSG_ID})
    durable_result = message(calls.DurableResult)
    status = message(calls.DurableStatus)
    status_reply = message(Reply[calls.DurableResult])
    event = message(events.Event)

    service = ["internal-services"]
    channel(
        "toolCalls",
        f"{pre}.calls.{{profile}}.{{caller}}",
        [call],
        "A tool call, request/reply: the proxy runs it and answers on the request's reply inbox. "
        f"The older `{pre}.calls.{{profile}}` (no caller) is still answered; the audit then records "
        "`profile:<profile>` as the actor.",
        service,
    )
    channel(
        "durableCalls",
        f"{pre}.durable.calls.{{profile}}.{{caller}}",
        [durable],
        "A durable tool call, published to the JetStream stream `<ROOT>_CALLS`: redelivered if a proxy "
        "dies, run at most once per idempotency key. Its outcome comes on `durableResults`.",
        service,
    )
    channel(
        "durableResults",
        f"{pre}.durable.results.{{profile}}.{{keyDigest}}",
        [durable_result],
        "The outcome of a durable call; subscribe before submitting, take only the result whose "
        "`idempotency_key` (and `fingerprint`) is yours.",
        service,
    )
    channel(
        "durableStatus",
        f"{pre}.durable.status.{{profile}}",
        [status],
        "Ask for a durable call's stored outcome (after a de-duplicated resubmission); "
        "the result is null while it is queued or running.",
        service,
    )
    channel(
        "events",
        f"{pre}.events.{{source}}.{{type}}",
        [event],
        "Every event Warden emits, on the JetStream stream `<ROOT>_EVENTS` (audit stores them); "
        "secrets are scrubbed from `data` before publishing.",
        service,
    )
    replies = [call_reply, status_reply]
    for s in internal:
        req = message(s.request)
        rep = message(_reply(s.result))
        replies.append(rep)
        key = _camel(s.name)
        channel(key, s.on(root), [req], f"Request/reply between Warden's services: `{s.name}`.", ["warden-internal"])
        operation(
            f"answer{key[:1].upper()}{key[1:]}",
            "receive",
            key,
            [req],
            f"A Warden service answers `{s.name}` with a `{name[_reply(s.result)]}`.",
            (inbox, [rep]),
        )
    channel(
        inbox,
        None,
        list(dict.fromkeys(replies)),
        "The requester's NATS reply subject (`_INBOX_<user>.<id>`: each user may subscribe to its own alone).",
        ["internal-services", "warden-internal"],
    )
    operation("callTool", "receive", "toolCalls", [call], "The proxy runs a tool call.", (inbox, [call_reply]))
    operation("submitDurableCall", "receive", "durableCalls", [durable], "The proxy takes a durable call.")
    operation(
        "publishDurableResult", "send", "durableResults", [durable_result], "The proxy publishes a durable outcome."
    )
    operation(
        "answerDurableStatus",
        "receive",
        "durableStatus",
        [status],
        "The proxy answers with the stored outcome.",
        (inbox, [status_reply]),
    )
    operation("publishEvent", "send", "events", [event], "A Warden service publishes an event.")

    ordered = {k: channels[k] for k in sorted(channels)}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Warden NATS API",
            "version": VERSION,
            "description": (
                "The NATS subjects and messages of Warden, generated from `warden_common.contracts` "
                "(`warden asyncapi`). Subjects start with `<root>.v1.`; the root is `warden` in "
                "production (`NATS__ROOT`). Messages are JSON; receivers ignore fields they do not "
                "know, and contracts grow only by optional fields. `warden_client.WardenClient` "
                "speaks the `internal-services` channels."
            ),
            "tags": [
                {"name": "internal-services", "description": "what an internal service may use"},
                {"name": "warden-internal", "description": "between Warden's own services only"},
            ],
        },
        "defaultContentType": "application/json",
        "servers": {
            "nats": {
                "host": "nats:4222",
                "protocol": "nats",
                "description": "one NATS user per service and internal service (`warden nats-config`)",
            }
        },
        "channels": ordered,
        "operations": {k: operations[k] for k in sorted(operations)},
        "components": {
            "messages": {k: messages[k] for k in sorted(messages)},
            "schemas": {k: defs["$defs"][k] for k in sorted(defs["$defs"])},
        },
    }


def render(root: str = ROOT) -> str:
    return json.dumps(build(root), indent=2, ensure_ascii=False) + "\n"
