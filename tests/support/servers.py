"""Real `smsq serve` processes for tests that cross process boundaries."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

SMSQ = str(Path(sys.executable).parent / "smsq")


def local_client(base_url: str = "", **options: Any) -> httpx.Client:
    """A client of a server the test started, which speaks plain HTTP.

    httpx's default client loads the system's certificates into a TLS context,
    some 20 ms of CPU each time: a few seconds a run, over the suite's few
    hundred clients, for connections that never use TLS.
    """
    return httpx.Client(base_url=base_url, verify=False, **options)


def local_async_client(base_url: str = "", **options: Any) -> httpx.AsyncClient:
    """local_client's asynchronous twin."""
    return httpx.AsyncClient(base_url=base_url, verify=False, **options)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextmanager
def smsq_process(
    args: list[str], env: Mapping[str, str], log: Path, program: str = SMSQ
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        # A session of its own, so the server's worker processes can be
        # signalled (or killed) together with it.
        proc = subprocess.Popen(
            [program, *args],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                crash(proc)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # any worker left behind


def crash(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process and every process it started: no cleanup runs."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@dataclass(frozen=True)
class Server:
    url: str
    proc: subprocess.Popen[bytes]


@contextmanager
def server(
    env: Mapping[str, str],
    log: Path,
    timeout: float = 60,
    program: str = SMSQ,
    host: str = "127.0.0.1",
    args: Sequence[str] = (),
) -> Iterator[Server]:
    """Run `smsq serve` on `host` (this checkout's, unless `program` names another),
    with `args` added to its command line, until it answers /readyz; yield its
    base URL and its process."""
    port = free_port(host)
    env = {**env, "SMSQ_PORT": str(port)} | ({"SMSQ_HOST": host} if host != "127.0.0.1" else {})
    with smsq_process(["serve", *args], env, log, program) as proc:
        url = f"http://{host}:{port}"
        wait_ready(url, proc, log, timeout)
        yield Server(url, proc)


@contextmanager
def serving(
    env: Mapping[str, str], log: Path, timeout: float = 60, program: str = SMSQ
) -> Iterator[str]:
    """Run `smsq serve` until it answers /readyz; yield its base URL."""
    with server(env, log, timeout, program) as served:
        yield served.url


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with local_client(timeout=1) as client:  # one for every probe
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"smsq serve exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if client.get(f"{url}/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"smsq serve not ready after {timeout} s:\n{log.read_text()}")
