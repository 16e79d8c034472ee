"""Run inside a network namespace of a test's own (`unshare -rn`), where
`ADDRESS` is an address of this machine that is not loopback.

With no key made, it asks a real server for `/messages` from each side and
prints the statuses as one JSON object:
- `smsq serve` on 127.0.0.1, asked from 127.0.0.1 and from `ADDRESS`;
- granian serving the app directly on `ADDRESS` (another way to run it, which
  `smsq serve`'s own refusal of a public address does not guard), asked from
  `ADDRESS`.

Usage: python -m tests.support.netns WORKDIR (SMSQ_DATABASE_URL in the environment).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.servers import free_port, server, smsq_process, wait_ready

ADDRESS = "10.77.0.1"


def status(url: str, source: str) -> int:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.get(f"{url}/messages").status_code


def main(workdir: Path) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", f"{ADDRESS}/32", "dev", "lo"], check=True)
    env = {
        "SMSQ_DATABASE_URL": os.environ["SMSQ_DATABASE_URL"],
        "SMSQ_DATA_DIR": str(workdir / "data"),
        "SMSQ_RUN_PROJECTORS": "false",
        "SMSQ_LOG_LEVEL": "WARNING",
    }
    seen = {}
    with server(env, workdir / "serve.log") as served:
        seen["serve, from 127.0.0.1"] = status(served.url, "127.0.0.1")
        seen[f"serve, from {ADDRESS}"] = status(served.url, ADDRESS)
    port = free_port(ADDRESS)
    granian = [
        *("--interface", "asgi", "--factory", "--host", ADDRESS, "--port", str(port)),
        "api.http.app:app_from_env",
    ]
    program = str(Path(sys.executable).parent / "granian")
    with smsq_process(granian, env, workdir / "granian.log", program) as proc:
        url = f"http://{ADDRESS}:{port}"
        wait_ready(url, proc, workdir / "granian.log", 60)
        seen[f"granian on {ADDRESS}, from {ADDRESS}"] = status(url, ADDRESS)
    print(json.dumps(seen))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
