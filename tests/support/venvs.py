"""Fresh virtualenvs with Warden's packages installed the way a user would: `python -m venv`,
then `pip install` of a package's directory, with pip as configured on this machine (the same
index options `make install` gets). Used by tests/e2e/test_client_install.py and
bench/client_install.

The packages are copied out of the checkout first: pip builds a local directory in place
(`build/` beside its pyproject), and a stale `build/lib` there would be packed into the wheel.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# distributions a fresh venv starts with (ensurepip); not counted as installed by us
SEEDED = frozenset({"pip", "setuptools", "wheel"})


@dataclass(frozen=True)
class Footprint:
    packages: list[str]  # normalised distribution names, the venv's own seeds left out
    site_bytes: int  # site-packages on disk (`du`), the seeds (pip, setuptools) included

    @property
    def mb(self) -> float:
        return self.site_bytes / 2**20


def normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


async def run(*cmd: str | Path, timeout: float = 600, cwd: Path | None = None) -> str:
    """`cmd`'s stdout; a non-zero exit fails with its output (pip says which package and why)."""
    proc = await asyncio.create_subprocess_exec(
        *map(str, cmd),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=cwd,
        # the venv's own python, not this process's: no PYTHONPATH or VIRTUAL_ENV from here
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")},
    )
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{text[-4000:]}")
    return text


def copy_package(name: str, dest: Path) -> Path:
    """libs/<name> (or services/<name>) copied to `dest`, without build or egg-info leftovers."""
    src = REPO / "libs" / name
    if not src.is_dir():
        src = REPO / "services" / name
    out = dest / name
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "tests"))
    return out


async def fresh_venv(path: Path) -> Path:
    """A new venv at `path` (from this interpreter's base Python); its python."""
    await run(sys.executable, "-m", "venv", path, timeout=120)
    return path / "bin" / "python"


async def pip_install(python: Path, *specs: str | Path) -> None:
    await run(python, "-m", "pip", "install", "-q", *specs)


async def footprint(python: Path) -> Footprint:
    listed = json.loads(await run(python, "-m", "pip", "list", "--format", "json", timeout=120))
    names = sorted(normalise(p["name"]) for p in listed if normalise(p["name"]) not in SEEDED)
    site = Path((await run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", timeout=60)).strip())
    kib = int((await run("du", "-sk", site, timeout=60)).split()[0])
    return Footprint(names, kib * 1024)
