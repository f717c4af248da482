"""Run every benchmark in turn: `python -m bench` (or `make bench`)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

BENCHES = ["bench.proxy", "bench.connectors", "bench.search", "bench.audit", "bench.client_install"]

if __name__ == "__main__":
    failed = []
    for mod in BENCHES:
        if importlib.util.find_spec(f"{mod}.__main__") is None:
            continue
        print(f"\n=== {mod} ===", flush=True)
        if subprocess.call([sys.executable, "-m", mod, *sys.argv[1:]]) != 0:
            failed.append(mod)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")
