"""Warden as the OAuth client of `@modelcontextprotocol/conformance`'s client auth scenarios.

    python tests/conformance/client_adapter.py SERVER_URL      (the suite runs this)

Run only inside the private network namespace that `conformance-client.sh` makes: there only
loopback exists, so this starts a whole embedded Warden stack of its own (its own NATS and
Postgres, free ports, a temp data dir). Then, like an admin and an agent would:

1. `POST /v1/connectors?authorize=true` an oauth2 connector for SERVER_URL — DCR, or the
   pre-registered client from `MCP_CONFORMANCE_CONTEXT` when the scenario gives one (Warden is
   configured with a client ID metadata document URL, used where the server supports CIMD);
2. play the browser on the consent URL (the mock authorization server approves at once)
   until Warden's `/connect/callback` answers;
3. wait (bounded) until the connector is `active`;
4. register its tools, grant them to a profile, make an agent key, and call one tool
   through the proxy's MCP endpoint; when the upstream asks for more scopes (step-up), Warden
   refuses with "authorize it again": authorize again as the admin (the consent asks for the
   union of scopes) and call once more.

Exit 0 on success, else 1 with one line on stderr saying which step failed. The stack is
always stopped. Scenario name: env `MCP_CONFORMANCE_SCENARIO`.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from support.admin import Admin, agent  # noqa: E402
from warden_cli.embedded import SERVICES, Stack, StackConfig, free_port  # noqa: E402

# Warden's client ID metadata document URL, as the suite expects it (auth/basic-cimd); the mock
# authorization server checks the client_id, it does not fetch the document
CIMD_URL = "https://conformance-test.local/client-metadata.json"


class Step(Exception):
    """A failed step; the message is the one-line reason."""


def _log(msg: str) -> None:
    print(f"[adapter {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def oauth_auth(context: dict[str, Any], scenario: str = "") -> dict[str, Any]:
    """The connector's `auth` block for this scenario."""
    auth: dict[str, Any] = {"type": "oauth2"}
    if scenario.startswith("auth/client-credentials"):
        # machine-to-machine (SEP-1046): the client's own token, no consent
        auth.update(grant_type="client_credentials", client_id=context["client_id"], use_dcr=False)
        if context.get("private_key_pem"):
            auth.update(private_key=context["private_key_pem"], signing_alg=context.get("signing_algorithm") or "ES256")
        else:
            auth.update(client_secret=context["client_secret"], token_endpoint_auth_method="client_secret_basic")
        return auth
    if context.get("client_id"):
        auth["client_id"] = context["client_id"]
        auth["use_dcr"] = False
        if context.get("client_secret"):
            auth["client_secret"] = context["client_secret"]
        method = context.get("token_endpoint_auth_method")
        if method:
            auth["token_endpoint_auth_method"] = method
        elif context.get("client_secret"):
            auth["token_endpoint_auth_method"] = "client_secret_basic"
        else:
            auth["token_endpoint_auth_method"] = "none"
    return auth


async def follow_to_callback(consent_url: str, callback: str, max_hops: int = 15) -> httpx.Response:
    """The browser: follow redirects from the consent URL until Warden's callback has answered."""
    async with httpx.AsyncClient(timeout=20, trust_env=False, follow_redirects=False) as browser:
        current = consent_url
        for _ in range(max_hops):
            at_callback = current.startswith(callback)
            r = await browser.get(current, headers={"Accept": "application/json"} if at_callback else {})
            if at_callback:
                return r
            if r.status_code not in (301, 302, 303, 307, 308):
                raise Step(f"consent: provider answered {r.status_code} at {current.split('?')[0]}: {r.text[:200]!r}")
            current = str(r.url.join(r.headers["location"]))
    raise Step(f"consent: no redirect to {callback} after {max_hops} hops")


async def run(server_url: str, scenario: str, context: dict[str, Any]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="warden-confc-"))
    cfg = StackConfig(
        data_dir=tmp,
        root="confc",
        nats_url=None,
        database_url=None,
        nats_port=free_port(),
        ports={n: free_port() for n, _, _ in SERVICES},
        allow_insecure=True,
        log_level="warning",
        extra_env={"connectors": {"WARDEN_CONNECTORS_CLIENT_METADATA_URL": CIMD_URL}},
    )
    stack = Stack(cfg)
    try:
        t0 = time.monotonic()
        try:
            await stack.start()
        except Exception as e:  # noqa: BLE001
            raise Step(f"stack: {e}") from e
        _log(f"stack up in {time.monotonic() - t0:.1f}s")
        async with httpx.AsyncClient(
            timeout=60, trust_env=False, headers={"Authorization": f"Bearer {stack.admin_token}"}
        ) as http:
            admin = Admin(stack, http)
            name = "conf" + secrets.token_hex(3)
            body = {"name": name, "url": server_url, "auth": oauth_auth(context, scenario)}
            r = await http.post(f"{stack.urls['connectors']}/v1/connectors?authorize=true", json=body)
            if r.status_code != 201:
                raise Step(f"add connector: {r.status_code} {r.text[:300]}")
            view = r.json()
            consent = view.get("consent_url")
            if consent:
                _log(f"consent at {consent.split('?')[0]}")
                page = await follow_to_callback(consent, f"{stack.urls['connectors']}/connect/callback")
                if page.status_code != 200:
                    raise Step(f"callback: {page.status_code} {page.text[:300]}")
            elif not view.get("connected"):
                raise Step(f"add connector: no consent_url (status {view.get('status')})")

            deadline = time.monotonic() + 20
            while True:
                shown = (await http.get(f"{stack.urls['connectors']}/v1/connectors/{name}")).json()
                if shown.get("status") == "active":
                    break
                if time.monotonic() > deadline:
                    raise Step(f"connector not active: {shown.get('status')} {shown.get('status_reason', '')}")
                await asyncio.sleep(0.2)
            _log(f"connector active, scopes {shown.get('oauth', {}).get('granted_scopes')}")

            r = await http.post(f"{stack.urls['registry']}/v1/connectors/{name}/tools", json={})
            if r.status_code not in (200, 201):
                raise Step(f"register tools: {r.status_code} {r.text[:300]}")
            registered = list(r.json().get("registered", []))
            if not registered:
                raise Step("register tools: the server listed no tools")
            key = await admin.key(await admin.profile([f"{name}__*"]))
            tool = registered[0]
            full = tool if tool.startswith(f"{name}__") else f"{name}__{tool}"
            async with agent(stack, key) as client:
                tools = await client.list_tools()
                schema = next((t.input_schema for t in tools.tools if t.name == full), {}) or {}
                args = {p: 1 for p in schema.get("required", [])}
                result = await client.call_tool(full, args)
                text = " ".join(getattr(c, "text", "") for c in result.content)
                if result.is_error and "authorize it again" in text:
                    # scope step-up on the organization's connection: the admin authorizes
                    # again (Warden asks for the union of scopes) and the agent retries
                    _log(f"step-up: {text[:160]!r}")
                    r = await http.post(f"{stack.urls['connectors']}/v1/connectors/{name}/authorize")
                    if r.status_code not in (200, 201):
                        raise Step(f"step-up authorize: {r.status_code} {r.text[:300]}")
                    page = await follow_to_callback(
                        r.json()["consent_url"], f"{stack.urls['connectors']}/connect/callback"
                    )
                    if page.status_code != 200:
                        raise Step(f"step-up callback: {page.status_code} {page.text[:300]}")
                    result = await client.call_tool(full, args)
            text = " ".join(getattr(c, "text", "") for c in result.content)
            if result.is_error:
                raise Step(f"tool call {full}: error: {text[:300]}")
            _log(f"called {full}: {text[:120]!r}")
    finally:
        stack.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: client_adapter.py SERVER_URL", file=sys.stderr)
        return 2
    server_url = sys.argv[-1]
    scenario = os.environ.get("MCP_CONFORMANCE_SCENARIO", "")
    context = json.loads(os.environ.get("MCP_CONFORMANCE_CONTEXT") or "{}")
    _log(f"scenario {scenario or '?'} against {server_url}")
    try:
        asyncio.run(asyncio.wait_for(run(server_url, scenario, context), 150))
    except Step as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    except TimeoutError:
        print("FAIL: timed out after 150s", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001
        print(f"FAIL: {type(e).__name__}: {str(e)[:300]}", file=sys.stderr)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
