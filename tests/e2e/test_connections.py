"""Connections from a hostile network: thousands held idle or half-sent cost the
service nothing and are closed on a deadline from their accept; what the server
closes after answering says `Connection: close`."""

from __future__ import annotations

import multiprocessing
import selectors
import socket
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import httpx
import pytest

from api.runtime.process import allow_open_files
from tests.support.phones import random_phone
from tests.support.servers import local_client, server

# The deadline (--header-timeout) of this module's server, in seconds.
DEADLINE = 3.0
IDLE, HALF, H2 = 2000, 500, 200
HALF_LINE = b"GET /messages?li"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# An HTTP/2 SETTINGS frame's type byte, after its 3-byte length.
H2_SETTINGS = 0x04
# What a prober found: each answer (what was asked, its status, its seconds) and each failure.
Probed = tuple[list[tuple[str, int, float]], list[str]]


@contextmanager
def start(database_url: str, workdir: Path, *args: str) -> Iterator[str]:
    env = {
        "SMSQ_DATABASE_URL": database_url,
        "SMSQ_DATA_DIR": str(workdir / "data"),
        "SMSQ_LOG_LEVEL": "WARNING",
    }
    with server(env, workdir / "serve.log", args=args) as served:
        yield served.url


@pytest.fixture(scope="module")
def guarded(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # Settings as flags: --body-timeout reaches the HTTP workers, which read
    # their settings from the environment `smsq serve` gives them (the 408
    # test below shows it did).
    workdir = tmp_path_factory.mktemp("guarded")
    with start(
        database_url, workdir, "--header-timeout", str(DEADLINE), "--body-timeout", "1"
    ) as url:
        yield url


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


@dataclass
class Hostile:
    kind: str
    sock: socket.socket
    opened: float
    closed: float | None = None
    received: bytes = b""


def probe(url: str, done: EventType, results: Queue[Probed]) -> None:
    """Fresh clients asking the service, one after another, until `done`. In a
    process of its own: the test's, busy opening sockets, would slow it."""
    answers: list[tuple[str, int, float]] = []
    failures: list[str] = []
    sent = {"to": "+447911123456", "message": "through the flood"}
    while not done.is_set():
        for what in ("GET /healthz", "POST /messages"):
            started = time.monotonic()
            try:
                # A new connection each time: the client no one has seen before.
                with local_client(url, timeout=5) as client:
                    if what == "GET /healthz":
                        status = client.get("/healthz").status_code
                    else:
                        body = {**sent, "from": random_phone()}
                        status = client.post("/messages", json=body).status_code
            except httpx.HTTPError as error:
                failures.append(f"{what}: {error!r}")
                continue
            answers.append((what, status, time.monotonic() - started))
    results.put((answers, failures))


def open_hostile(where: tuple[str, int], kind: str, data: bytes) -> Hostile:
    sock = socket.create_connection(where, timeout=10)
    opened = time.monotonic()
    if data:
        sock.sendall(data)
    sock.setblocking(False)
    return Hostile(kind, sock, opened)


def watch_until_closed(hostile: list[Hostile], wait: float) -> None:
    """Note when the server closes each connection (and what it sent first)."""
    with selectors.DefaultSelector() as selector:
        for conn in hostile:
            selector.register(conn.sock, selectors.EVENT_READ, conn)
        deadline = time.monotonic() + wait
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.1):
                conn = key.data
                try:
                    chunk = conn.sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if chunk:
                    conn.received += chunk
                    continue
                conn.closed = time.monotonic()
                selector.unregister(conn.sock)


def test_thousands_of_idle_and_half_sent_connections_leave_the_service_answering(
    guarded: str,
) -> None:
    allow_open_files(IDLE + HALF + H2 + 1024)  # this process holds them all
    where = address(guarded)
    spawn = multiprocessing.get_context("spawn")
    done, results = spawn.Event(), spawn.Queue()
    prober = spawn.Process(target=probe, args=(guarded, done, results))
    prober.start()
    hostile: list[Hostile] = []
    try:
        for kind, count, data in (("idle", IDLE, b""), ("half", HALF, HALF_LINE)):
            hostile += [open_hostile(where, kind, data) for _ in range(count)]
        hostile += [open_hostile(where, "h2", H2_PREFACE) for _ in range(H2)]
        watch_until_closed(hostile, wait=DEADLINE + 10)
    finally:
        done.set()
        probed, failures = results.get(timeout=30)
        prober.join()
        for conn in hostile:
            conn.sock.close()

    assert failures == []
    for what in ("GET /healthz", "POST /messages"):
        answers = [(status, took) for w, status, took in probed if w == what]
        assert len(answers) >= 5, f"{what}: too few answers while the sockets were held"
        assert {status for status, _ in answers} == {200 if what.startswith("GET") else 201}
        slowest = max(took for _, took in answers)
        assert slowest < 1.0, (
            f"{what}: {slowest:.2f} s (median {statistics.median(t for _, t in answers):.3f} s)"
        )

    unclosed = [c.kind for c in hostile if c.closed is None]
    assert unclosed == [], f"{len(unclosed)} connections still open"
    for kind in ("idle", "half"):
        held = [c.closed - c.opened for c in hostile if c.kind == kind and c.closed is not None]
        # Closed on the deadline from the accept: not before it, and not much after.
        assert min(held) > DEADLINE - 0.1, (kind, min(held))
        assert max(held) < DEADLINE + 1.5, (kind, max(held))
    # HTTP/2 is off: a preface is refused at once, never answered with HTTP/2 SETTINGS.
    prefaces = [c for c in hostile if c.kind == "h2"]
    assert all(c.closed is not None and c.closed - c.opened < 1.5 for c in prefaces)
    assert not any(len(c.received) > 3 and c.received[3] == H2_SETTINGS for c in prefaces)


def test_http2_is_spoken_only_when_enabled(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    for args, speaks_h2 in (((), False), (("--http2",), True)):
        workdir = tmp_path_factory.mktemp("h2")
        with start(database_url, workdir, *args) as url:
            with socket.create_connection(address(url), timeout=5) as sock:
                sock.sendall(H2_PREFACE)
                first = sock.recv(64)
            assert (len(first) > 3 and first[3] == H2_SETTINGS) is speaks_h2, (args, first)


def test_a_client_told_to_close_after_a_refused_body_sends_its_next_request_elsewhere(
    guarded: str,
) -> None:
    too_big = b'{"from": "' + b"1" * 20_000_000 + b'"}'
    with local_client(guarded, timeout=30) as client:
        refused = client.post(
            "/messages", content=too_big, headers={"Content-Type": "application/json"}
        )
        assert refused.status_code == 413
        assert refused.headers["connection"] == "close"
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == "/problems/too-large"
        sent = {"from": random_phone(), "to": "+447911123456", "message": "after a 413"}
        assert client.post("/messages", json=sent).status_code == 201


def test_a_body_cut_off_by_its_deadline_is_a_problem_and_closes_the_connection(
    guarded: str,
) -> None:
    head = b"POST /messages HTTP/1.1\r\nHost: smsq\r\nContent-Type: application/json\r\n"
    with socket.create_connection(address(guarded), timeout=10) as sock:
        sock.sendall(head + b'Content-Length: 200\r\n\r\n{"from": ')
        started = time.monotonic()
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert time.monotonic() - started < 3  # --body-timeout 1, not the default 10 s
    head_lines, _, body = answer.partition(b"\r\n\r\n")
    assert head_lines.startswith(b"HTTP/1.1 408 ")
    assert b"\r\nconnection: close" in head_lines.lower()
    assert b'"type":"/problems/timeout"' in body


def test_a_connection_whose_request_was_read_whole_is_kept(guarded: str) -> None:
    sent = {"from": random_phone(), "to": "+447911123456", "message": "keep-alive"}
    with local_client(guarded, timeout=10) as client:
        first = client.post("/messages", json=sent)
        second = client.get("/healthz")
    assert first.status_code == 201
    assert "connection" not in first.headers
    assert second.status_code == 200
