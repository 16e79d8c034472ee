"""An open-loop HTTP/1.1 load generator: requests leave on a fixed schedule.

A closed-loop tool (wrk, or clients that wait for each answer before the
next) sends less when the server slows down, so its latencies hide the
stalls it caused ("coordinated omission"). Here request i is due at
`start + i / rate` whatever happened before, and its latency is counted
from that moment, as wrk2 does. It is a few hundred lines of asyncio
protocol code with pre-encoded requests, so at the rates it is used for
(half of the measured maximum) it costs a few per cent of one core; the
run reports what it used.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Callable
from dataclasses import dataclass, field

Build = Callable[[int], bytes]
OnResponse = Callable[[int, int, bytes, float], None]


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc or ConnectionError("connection closed"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self._buffer[:end]).lower()
        at = head.find(b"content-length:")
        length = 0
        if at >= 0:
            stop = head.find(b"\r\n", at)
            length = int(head[at + 15 : stop if stop >= 0 else len(head)])
        total = end + 4 + length
        if len(self._buffer) < total:
            return
        status = int(head[9:12])
        body = bytes(self._buffer[end + 4 : total])
        del self._buffer[:total]
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result((status, body))

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self._waiter


@dataclass
class Result:
    rate: float
    sent: int = 0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    elapsed: float = 0.0
    cpu: float = 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    @property
    def achieved(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    @property
    def cpu_share(self) -> float:
        """The generator's own CPU use, as a share of one core."""
        return self.cpu / self.elapsed if self.elapsed else 0.0


async def run(
    host: str,
    port: int,
    *,
    rate: float,
    seconds: float,
    build: Build,
    on_response: OnResponse | None = None,
    max_connections: int = 512,
) -> Result:
    """Send `rate` requests per second for `seconds`; `build(i)` makes request i."""
    loop = asyncio.get_running_loop()
    total = int(rate * seconds)
    result = Result(rate=rate)
    idle: list[_Connection] = []
    opened = 0
    freed = asyncio.Condition()
    tasks: set[asyncio.Task[None]] = set()

    async def connection() -> _Connection:
        nonlocal opened
        while True:
            while idle:
                conn = idle.pop()
                if not conn.closed:
                    return conn
            if opened < max_connections:
                opened += 1
                _, conn = await loop.create_connection(_Connection, host, port)
                return conn
            async with freed:
                await freed.wait()

    async def one(i: int, due: float) -> None:
        conn = await connection()
        try:
            status, body = await conn.exchange(build(i))
        except (OSError, ConnectionError):
            result.errors += 1
            return
        done = loop.time()
        idle.append(conn)
        async with freed:
            freed.notify()
        result.latencies.append(done - due)
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if on_response is not None:
            on_response(i, status, body, done)

    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    started = loop.time() + 0.01
    i = 0
    while i < total:
        now = loop.time()
        due_count = min(total, int((now - started) * rate) + 1)
        while i < due_count:
            task = loop.create_task(one(i, started + i / rate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        await asyncio.sleep(max(0.0, started + i / rate - loop.time()))
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    result.elapsed = loop.time() - started
    result.sent = total
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.cpu = usage.ru_utime + usage.ru_stime - cpu_before
    for conn in idle:
        if conn.transport is not None:
            conn.transport.close()
    return result


def post(path: str, body: bytes, host: str = "127.0.0.1") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def get(path: str, host: str = "127.0.0.1") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
