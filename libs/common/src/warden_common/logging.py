"""Logging that cannot print a secret.

Every record passes a redaction filter on the handler (so third-party loggers are
covered too): known secret values registered at run time are replaced, and so is
anything shaped like a credential (bearer tokens, `token=...`, agent keys, OAuth
codes in URLs). Output is one JSON object per line, with the trace id and the call id
of the work it was written for (context variables, see `warden_common.tracing`).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections import OrderedDict

from warden_common.tracing import current_call_id, current_trace_id

__all__ = ["RedactingFilter", "redact", "register_secret", "setup_logging"]

_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(
        r"(?i)((?:access_token|refresh_token|id_token|client_secret|password|api[_-]?key|token|secret|code_verifier)"
        r"[\"']?\s*[:=]\s*[\"']?)[^\"'\s,;&}]+"
    ),
    re.compile(r"(?i)([?&](?:code|state|token|access_token)=)[^&\s\"']+"),
    re.compile(r"()\bwk_[A-Za-z0-9_-]{8,}"),
]
_MAX_KNOWN = 10_000
_known: OrderedDict[str, None] = OrderedDict()


def register_secret(value: str | None) -> None:
    """Remember a secret value so it is masked wherever it would appear in a log line."""
    if not value or len(value) < 6:
        return
    _known[value] = None
    _known.move_to_end(value)
    while len(_known) > _MAX_KNOWN:
        _known.popitem(last=False)


def redact(text: str) -> str:
    for secret in _known:
        if secret in text:
            text = text.replace(secret, "[redacted]")
    for pat in _PATTERNS:
        text = pat.sub(lambda m: m.group(1) + "[redacted]", text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        record.msg = redact(msg)
        record.args = None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class _JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        tid = current_trace_id()
        if tid:
            out["trace_id"] = tid
        if cid := current_call_id():
            out["call_id"] = cid
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False)


def setup_logging(service: str, level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(_JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # per-request INFO lines of the HTTP clients and the MCP SDK cost ~10% of a proxied call
    for noisy in ("httpx", "httpcore", "httpx2", "httpcore2", "mcp", "sse_starlette"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
