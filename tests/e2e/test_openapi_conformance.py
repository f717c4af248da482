"""Each service's OpenAPI document tells the truth about its status codes and error model
(issue 16 item 26): schemathesis sends generated requests to every documented operation of
the running services and fails on any status code the document does not list; the documents
carry Warden's error model (400, not 422 HTTPValidationError) and the bearer scheme."""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from pathlib import Path

import httpx
import pytest
from warden_cli.embedded import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SERVICES = ("connectors", "registry", "proxy", "audit")


@pytest.mark.parametrize("service", SERVICES)
async def test_the_document_has_the_error_model_and_the_security_scheme(stack: Stack, service: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        doc = (await http.get(f"{stack.urls[service]}/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "Error" in schemas
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    ops = [(p, m, op) for p, item in doc["paths"].items() for m, op in item.items()]
    assert ops and not any("422" in op["responses"] for _, _, op in ops)
    for path, _, op in ops:
        if path.startswith("/v1/"):
            assert op["security"] == [{"bearer": []}] and {"401", "403"} <= set(op["responses"]), path
        if "{" in path:
            assert "404" in op["responses"], path


@pytest.mark.parametrize("service", SERVICES)
async def test_docs_load_nothing_from_another_origin(stack: Stack, service: str) -> None:
    """`/docs` works without a CDN (issue 14): the page names only this service's own paths,
    and each script, style sheet and icon it names is served."""
    base = stack.urls[service]
    async with httpx.AsyncClient(timeout=30) as http:
        page = await http.get(f"{base}/docs")
        assert page.status_code == 200 and "SwaggerUIBundle" in page.text
        assert not re.search(r"(https?:)?//", page.text.replace("window.location.origin", "")), page.text
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert {a.rsplit(".", 1)[-1] for a in assets} >= {"js", "css"}
        for asset in assets:
            assert asset.startswith("/docs/static/"), asset
            got = await http.get(f"{base}{asset}")
            assert got.status_code == 200 and got.content, asset
        assert (await http.get(f"{base}/redoc")).status_code == 404  # ReDoc has no offline bundle


@pytest.mark.skipif(
    shutil.which("schemathesis", path=str(Path(sys.executable).parent)) is None, reason="no schemathesis"
)
@pytest.mark.parametrize("service", SERVICES)
async def test_every_status_code_a_service_answers_is_documented(stack: Stack, service: str, tmp_path: Path) -> None:
    base = stack.urls[service]
    cli = str(Path(sys.executable).parent / "schemathesis")
    args = [
        cli, "run", f"{base}/openapi.json", "--url", base,
        "--checks", "status_code_conformance",
        "--max-examples", "8",
        "--request-timeout", "20",
        "--generation-deterministic",
        "-H", f"Authorization: Bearer {stack.admin_token}",
        # routes that wait (long polls, SSE tails) or stream are not request/response
        "--exclude-path-regex", r"(/tail|/stream|/events/stream|/wait)$",
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path
    )
    async with asyncio.timeout(600):
        out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
