"""`WWW-Authenticate: Bearer ...` challenges (RFC 6750 §3) and scope step-up (MCP, RFC 9728 §5.1).

`parse_bearer_challenge` reads the Bearer challenge out of a header that may hold several
challenges; `step_up_scopes` is the union a client asks for after `insufficient_scope`.
Shared: the proxy reads upstream challenges, connectors builds the step-up consent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["BearerChallenge", "parse_bearer_challenge", "step_up_scopes"]

# auth-param: token "=" ( token / quoted-string ), with optional whitespace around "="
_PARAM = re.compile(r'\s*([A-Za-z0-9!#$%&\'*+.^_`|~-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)\s*(,|$)')
_SCHEME = re.compile(r"\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)(?:\s+|$|(?=,))")


@dataclass(frozen=True)
class BearerChallenge:
    error: str | None = None
    error_description: str | None = None
    scope: tuple[str, ...] = ()
    resource_metadata: str | None = None
    realm: str | None = None

    @property
    def insufficient_scope(self) -> bool:
        return self.error == "insufficient_scope"


def _unquote(v: str) -> str:
    if len(v) >= 2 and v[0] == v[-1] == '"':
        return re.sub(r"\\(.)", r"\1", v[1:-1])
    return v


def _challenges(header: str) -> list[tuple[str, dict[str, str]]]:
    out: list[tuple[str, dict[str, str]]] = []
    pos = 0
    n = len(header)
    while pos < n:
        while pos < n and header[pos] in " ,\t":
            pos += 1
        m = _SCHEME.match(header, pos)
        if not m:
            break
        scheme = m.group(1)
        pos = m.end()
        params: dict[str, str] = {}
        while pos < n:
            p = _PARAM.match(header, pos)
            if not p:
                break
            params.setdefault(p.group(1).lower(), _unquote(p.group(2)))
            pos = p.end()
        if not params:  # token68 or nothing: skip to the next comma
            nxt = header.find(",", pos)
            pos = n if nxt < 0 else nxt + 1
        out.append((scheme, params))
    return out


def parse_bearer_challenge(header: str | Iterable[str] | None) -> BearerChallenge | None:
    """The Bearer challenge in one or more WWW-Authenticate values, or None if there is none."""
    if header is None:
        return None
    values = [header] if isinstance(header, str) else list(header)
    for value in values:
        for scheme, params in _challenges(value):
            if scheme.lower() != "bearer":
                continue
            return BearerChallenge(
                error=params.get("error") or None,
                error_description=params.get("error_description") or None,
                scope=tuple(dict.fromkeys(params.get("scope", "").split())),
                resource_metadata=params.get("resource_metadata") or None,
                realm=params.get("realm"),
            )
    return None


def step_up_scopes(current: Iterable[str], challenge: BearerChallenge | Iterable[str]) -> tuple[str, ...]:
    """The scopes to ask for next: what we hold plus what the challenge requires, order kept."""
    required = challenge.scope if isinstance(challenge, BearerChallenge) else tuple(challenge)
    return tuple(dict.fromkeys([*current, *required]))
