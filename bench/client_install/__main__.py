"""What an internal service installs for `WardenClient`, against the full set (issue 14).

    python -m bench.client_install

Two fresh venvs (`python -m venv`, pip as configured on this machine, the packages copied out
of this checkout): `pip install libs/common libs/client` (warden-client on warden-common's base
install), and the baseline in the same run, `pip install 'libs/common[server]'`: what every
warden-common install pulled before the client had a package of its own, and what the services
still install. Printed for each: the packages pip added to the fresh venv (pip and setuptools,
which every venv starts with, left out) and the MB they added to its site-packages (`du`),
then the ratios.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from support.venvs import copy_package, footprint, fresh_venv, pip_install  # noqa: E402


async def measure(where: Path, *specs: str) -> tuple[list[str], float]:
    python = await fresh_venv(where)
    seeded = await footprint(python)
    await pip_install(python, *specs)
    got = await footprint(python)
    return sorted(set(got.packages) - set(seeded.packages)), (got.site_bytes - seeded.site_bytes) / 2**20


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="warden-bench-client-") as tmp:
        src = Path(tmp) / "src"
        common, client = copy_package("common", src), copy_package("client", src)
        rows = {
            "warden-client (libs/common libs/client)": await measure(Path(tmp) / "client", str(common), str(client)),
            "baseline: warden-common[server]": await measure(Path(tmp) / "server", f"{common}[server]"),
        }
    for name, (pkgs, mb) in rows.items():
        print(f"{name:42} {len(pkgs):3} packages {mb:6.1f} MB  {', '.join(pkgs)}")
    (cp, cmb), (sp, smb) = rows.values()
    print(f"{'client / baseline':42} {len(cp) / len(sp):6.2f}x packages {cmb / smb:6.2f}x MB")


if __name__ == "__main__":
    asyncio.run(main())
