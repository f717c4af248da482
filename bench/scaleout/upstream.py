"""The drill's upstream: the demo MCP server (warden_cli.demo_server) plus `record(key)`,
which appends the key to a file each time it runs, so the drill can count executions per key
(a key executed twice is a call answered twice).

    python -m bench.scaleout.upstream PORT EXECUTIONS_FILE
"""

from __future__ import annotations

import os
import sys

import uvicorn
from mcp.types import ToolAnnotations
from warden_cli.demo_server import build_server


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    srv = build_server()

    @srv.tool(annotations=ToolAnnotations(read_only_hint=True))
    def record(key: str) -> str:
        """Record one execution of `key` and echo it back."""
        os.write(fd, f"{key}\n".encode())  # one write on an O_APPEND file: whole lines, never torn
        return key

    app = srv.streamable_http_app(stateless_http=True, json_response=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
