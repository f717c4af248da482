"""Request/reply on NATS with nothing but nats-py and pydantic: what `Bus` (the services) and
`warden_client.WardenClient` (internal services) both speak.

- `ask(nc, subject, body)`: `nc.request`, asked again while nobody is subscribed.
- `decode_reply(data, Result)`: a reply's typed result, or the typed error it carries
  (`warden_common.errors`).

It imports no server dependency (no metrics, no outbox, no OpenTelemetry, no web),
so the client installs and imports without them (libs/client/tests/test_client_imports.py,
tests/e2e/test_client_install.py).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, TypeVar

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from pydantic import BaseModel, ValidationError

from warden_common.contracts.base import Reply, ReplyError
from warden_common.errors import Unavailable, from_reply_error

__all__ = ["ask", "decode_reply"]

Rep = TypeVar("Rep", bound=BaseModel)

# pauses before asking again when nobody is subscribed (at most ~0.4 s in all, within the timeout)
_NO_RESPONDERS_RETRY = (0.02, 0.05, 0.1, 0.2)


async def ask(
    nc: NatsClient, subject: str, body: bytes, *, timeout: float, headers: dict[str, str] | None = None
) -> Msg:
    """`nc.request`, asked again (within `timeout` in all) while nobody is subscribed: nobody
    got the message, so that is safe. It covers a replica restarting, and a subscription
    another connection has just made (flushed) that the server does not route to yet (seen
    with nats-server 2.9 right after a stream was created). Raises NoRespondersError once
    the pauses are spent, nats' TimeoutError when the answer does not come in time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for pause in _NO_RESPONDERS_RETRY:
        try:
            return await nc.request(subject, body, timeout=timeout, headers=headers)
        except NoRespondersError:
            left = deadline - loop.time()
            if left <= pause:
                raise
            await asyncio.sleep(pause)
            timeout = left - pause
    return await nc.request(subject, body, timeout=timeout, headers=headers)


_REPLIES: dict[type[BaseModel], type[Reply[Any]]] = {}


def decode_reply(data: bytes, result: type[Rep]) -> Rep:
    # one pass through pydantic-core for a well-formed reply (a quarter of the time of
    # json.loads + validate); anything else is worded by the checks below
    reply_model = _REPLIES.get(result)
    if reply_model is None:
        reply_model = _REPLIES[result] = Reply[result]  # type: ignore[valid-type]
    try:
        r = reply_model.model_validate_json(data)
    except ValidationError:
        r = None
    if r is not None:
        if r.error is not None:
            raise from_reply_error(r.error)
        if r.result is not None:
            return r.result  # type: ignore[no-any-return]
    try:
        doc = json.loads(data)
    except ValueError:
        raise Unavailable("malformed reply from a Warden service") from None
    if isinstance(doc, dict) and doc.get("error") is not None:
        raise from_reply_error(ReplyError.model_validate(doc["error"]))
    if not isinstance(doc, dict) or "result" not in doc:
        raise Unavailable("malformed reply from a Warden service")
    return result.model_validate(doc["result"])
