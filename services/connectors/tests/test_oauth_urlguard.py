"""The URL guard refuses SSRF targets before a byte is sent, and pins connections to checked
addresses. Network behaviour runs against real loopback servers; only DNS is replaced, to
simulate names that resolve where an attacker wants."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from support.protected_mcp import serve_on_loopback
from warden_connectors.oauth import (
    BadResponse,
    ForbiddenAddress,
    GuardedHttp,
    InsecureUrl,
    ProviderUnavailable,
    ResponseTooLarge,
    TooManyRedirects,
    UrlPolicy,
    UrlRefused,
    check_address,
    check_url,
)

PROD = UrlPolicy(timeout_s=5)


def _app() -> Starlette:
    async def hello(request: Request) -> Response:
        return PlainTextResponse("hello")

    async def to(request: Request) -> Response:
        return RedirectResponse(request.query_params["url"], status_code=302)

    async def loop(request: Request) -> Response:
        n = int(request.path_params["n"])
        return RedirectResponse(f"/loop/{n + 1}", status_code=302)

    async def big(request: Request) -> Response:
        return PlainTextResponse("x" * 5000)

    async def chunked(request: Request) -> Response:
        async def gen() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"y" * 1000

        from starlette.responses import StreamingResponse

        return StreamingResponse(gen())

    return Starlette(
        routes=[
            Route("/hello", hello),
            Route("/to", to, methods=["GET", "POST"]),
            Route("/loop/{n}", loop),
            Route("/big", big),
            Route("/chunked", chunked),
        ]
    )


@pytest.fixture(scope="module")
async def origin() -> AsyncIterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    async with serve_on_loopback(_app(), sock):
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def _resolver(table: dict[str, list[str]]):
    async def resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        return [ipaddress.ip_address(a) for a in table[host]]

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/",
        "https://192.168.1.1/",
        "https://[::1]/",
        "https://[::ffff:10.0.0.1]/",
        "https://[fe80::1]/",
        "https://0.0.0.0/",
        "https://224.0.0.1/",
        "https://100.64.0.1/",
        "https://127.0.0.1/",
    ],
)
async def test_guard_refuses_private_and_special_addresses(url: str) -> None:
    async with GuardedHttp(PROD) as http:
        with pytest.raises(ForbiddenAddress) as ei:
            await http.request("GET", url)
    assert ei.value.http_status == 400 and not ei.value.retryable


async def test_guard_refuses_a_name_resolving_to_loopback_when_loopback_is_not_allowed(origin: str) -> None:
    port = origin.rsplit(":", 1)[1]
    policy = UrlPolicy(allow_http_hosts=frozenset({"localhost"}), timeout_s=5)
    async with GuardedHttp(policy) as http:  # the system resolver: localhost -> 127.0.0.1 / ::1
        with pytest.raises(ForbiddenAddress) as ei:
            await http.request("GET", f"http://localhost:{port}/hello")
    assert "localhost resolves to" in ei.value.message and "loopback" in ei.value.message
    # the same server is reachable once loopback is allowed (dev/test flag)
    async with GuardedHttp(UrlPolicy.development()) as http:
        assert (await http.request("GET", f"http://localhost:{port}/hello")).content == b"hello"


async def test_guard_checks_every_resolved_address_and_pins_the_connection(origin: str) -> None:
    port = origin.rsplit(":", 1)[1]
    # one public, one private answer: refused, whichever would have been used
    mixed = _resolver({"api.example.test": ["93.184.216.34", "10.1.2.3"]})
    async with GuardedHttp(UrlPolicy(allow_http_hosts=frozenset({"api.example.test"})), resolver=mixed) as http:
        with pytest.raises(ForbiddenAddress):
            await http.request("GET", f"http://api.example.test:{port}/hello")
    # a rebinding name: the guard connects to the address it checked, not whatever DNS says later
    answers = iter([["127.0.0.1"], ["10.9.9.9"]])

    async def rebinding(host: str, p: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        return [ipaddress.ip_address(a) for a in next(answers)]

    policy = UrlPolicy.development(allow_http_hosts=frozenset({"rebind.example.test"}))
    async with GuardedHttp(policy, resolver=rebinding) as http:
        # the name exists in no real DNS: reaching the server proves we dialled the checked address
        r = await http.request("GET", f"http://rebind.example.test:{port}/hello")
        assert r.content == b"hello"
    # a new connection resolves again and is checked again
    async with GuardedHttp(policy, resolver=rebinding) as http:
        with pytest.raises(ForbiddenAddress):
            await http.request("GET", f"http://rebind.example.test:{port}/hello")


async def test_guard_refuses_http_where_https_is_required() -> None:
    async with GuardedHttp(PROD) as http:
        with pytest.raises(InsecureUrl) as ei:
            await http.request("GET", "http://mcp.example.com/mcp")
        assert "https" in ei.value.message
        for url in ("ftp://mcp.example.com/x", "file:///etc/passwd"):
            with pytest.raises(UrlRefused):
                await http.request("GET", url)
        with pytest.raises(UrlRefused):
            await http.request("GET", "https://user:pw@mcp.example.com/mcp")


async def test_guard_refuses_a_redirect_to_a_private_address(origin: str) -> None:
    async with GuardedHttp(UrlPolicy.development(timeout_s=5)) as http:
        with pytest.raises(ForbiddenAddress):
            await http.request("GET", f"{origin}/to?url=https://10.0.0.1/admin")
        with pytest.raises(ForbiddenAddress):
            await http.request("GET", f"{origin}/to?url=https://169.254.169.254/latest/meta-data/")
        with pytest.raises(InsecureUrl):
            await http.request("GET", f"{origin}/to?url=http://metadata.example.test/")
        ok = await http.request("GET", f"{origin}/to?url=/hello")
        assert ok.content == b"hello" and len(ok.redirects) == 1


async def test_refusals_name_the_redirect_and_a_redirect_is_not_a_bad_body(origin: str) -> None:
    """Issue 16 item 19: a refused redirect says from where to where; a redirect where an answer
    was due is reported as a redirect, not as a body that is not JSON; no made-up setting."""
    async with GuardedHttp(UrlPolicy.development(timeout_s=5)) as http:
        with pytest.raises(ForbiddenAddress) as refused:
            await http.request("GET", f"{origin}/to?url=https://10.0.0.1/admin")
        assert refused.value.message.startswith(f"refused the redirect from {origin}/to to https://10.0.0.1/admin")
        posted = await http.request("POST", f"{origin}/to?url=/hello")
        with pytest.raises(BadResponse) as redirect:
            posted.json_object()
        msg = redirect.value.message
        assert "redirect (HTTP 302 to" in msg and f"{origin}/hello" in msg and "not JSON" not in msg, msg
        followed = await http.request("GET", f"{origin}/to?url=/hello")
        with pytest.raises(BadResponse) as body:
            followed.json()
        assert "after redirects" in body.value.message and "text/plain" in body.value.message
        with pytest.raises(InsecureUrl) as insecure:
            await http.request("GET", "http://mcp.example.com/x")
        assert "admin lists" not in insecure.value.message and "development run" in insecure.value.message
    with pytest.raises(InsecureUrl) as prod:
        check_url("http://mcp.example.com/x", UrlPolicy())
    assert "https only" in prod.value.message


async def test_guard_limits_redirects(origin: str) -> None:
    async with GuardedHttp(UrlPolicy.development(max_redirects=3)) as http:
        with pytest.raises(TooManyRedirects):
            await http.request("GET", f"{origin}/loop/0")
        # POST is never redirected: the 302 comes back as is
        r = await http.request("POST", f"{origin}/to?url=/hello")
        assert r.status_code in (302, 405)


async def test_guard_caps_response_size(origin: str) -> None:
    async with GuardedHttp(UrlPolicy.development(max_response_bytes=4096)) as http:
        with pytest.raises(ResponseTooLarge):
            await http.request("GET", f"{origin}/big")
        with pytest.raises(ResponseTooLarge):
            await http.request("GET", f"{origin}/chunked")


async def test_connection_refused_is_a_retryable_typed_error() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    async with GuardedHttp(UrlPolicy.development()) as http:
        with pytest.raises(ProviderUnavailable) as ei:
            await http.request("GET", f"http://127.0.0.1:{port}/")
    assert ei.value.retryable and ei.value.code == "unavailable"


def test_allowed_networks_let_an_admin_open_one_private_range() -> None:
    policy = UrlPolicy(allowed_networks=(ipaddress.ip_network("10.20.0.0/16"),))
    check_address(ipaddress.ip_address("10.20.3.4"), policy)
    with pytest.raises(ForbiddenAddress):
        check_address(ipaddress.ip_address("10.21.3.4"), policy)
    with pytest.raises(ForbiddenAddress):
        check_address(ipaddress.ip_address("64:ff9b::a9fe:a9fe"), UrlPolicy())  # NAT64 of 169.254.169.254
    check_address(ipaddress.ip_address("93.184.216.34"), UrlPolicy())
