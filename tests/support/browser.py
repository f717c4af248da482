"""Browser helpers for the console tests: Debian's Chromium driven by Playwright for Python (never
`playwright install`), one browser per module, screenshots under test-artifacts/console/."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "console"
AXE_DIR = REPO / "tests" / "peers" / "axe"


def axe_script() -> Path | None:
    """axe-core from the npm peer (installed by `make install`; `npm ci` here if missing)."""
    path = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
    if not path.exists() and (npm := shutil.which("npm")):
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=AXE_DIR, check=False, timeout=300)
    return path if path.exists() else None


async def shot(page: Any, name: str) -> Path:
    """A full-page screenshot for people to look at. It is an artifact, not a check: when a busy
    machine's headless Chromium cannot capture one in time, the test goes on (with a warning)."""
    import warnings

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    for full_page in (True, False):
        try:
            await page.screenshot(path=str(path), full_page=full_page, timeout=15_000)
            return path
        except Exception as e:  # noqa: BLE001 - playwright's Error and TimeoutError
            last = e
    warnings.warn(f"no screenshot {name}: {type(last).__name__}: {str(last)[:200]}", stacklevel=2)
    return path
