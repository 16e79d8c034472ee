"""What every benchmark shares: its own databases, its own processes, a table.

A benchmark never touches the user's data: it starts an embedded PostgreSQL
in a temporary directory (deleted afterwards), or, given an admin URL
(`--database-url` or `SMSQ_BENCH_DATABASE_URL`, a role allowed to create
databases), creates databases of its own there and drops them at the end.
Every process it starts runs in a session of its own and is killed with its
children on the way out, Ctrl-C and errors included.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import psutil
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from uuid_utils.compat import uuid4

from migrations import migrate
from tests.support.servers import free_port

URL_VARIABLE = "SMSQ_BENCH_DATABASE_URL"


def arguments(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="a short smoke run: small data, short phases"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get(URL_VARIABLE),
        help=f"admin URL of a PostgreSQL to create throwaway databases on "
        f"(default: ${URL_VARIABLE}, else an embedded server in a temporary directory)",
    )
    return parser


def stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every `finally` below runs.

    SIGINT is set to raise too: a shell starts background jobs with it ignored,
    and Python then leaves it so.
    """

    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _raise)
    signal.signal(signal.SIGINT, signal.default_int_handler)


class Server:
    """A PostgreSQL to make throwaway databases on."""

    def __init__(self, admin_url: str, embedded: bool) -> None:
        self.admin_url = admin_url
        self.embedded = embedded
        self._made: list[str] = []

    def url(self, name: str) -> str:
        return make_conninfo(self.admin_url, dbname=name)

    def create(self, purpose: str, *, migrated: bool = True) -> str:
        name = f"smsq_bench_{purpose}_{uuid4().hex[:8]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self._made.append(name)
        url = self.url(name)
        if migrated:
            migrate(url)
        return url

    def drop(self, url: str) -> None:
        self._drop([str(conninfo_to_dict(url)["dbname"])])

    def keep(self, url: str) -> None:
        """Leave the database behind: `drop_all` passes it by."""
        self._made.remove(str(conninfo_to_dict(url)["dbname"]))

    def drop_all(self) -> None:
        self._drop(list(self._made))

    def _drop(self, names: list[str]) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in names:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
                self._made.remove(name)

    def describe(self) -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT current_setting('server_version'), current_setting('shared_buffers'),"
                " current_setting('synchronous_commit'), current_setting('fsync')"
            ).fetchone()
        assert row is not None
        where = "embedded" if self.embedded else "given URL"
        return (
            f"PostgreSQL {row[0]} ({where}), shared_buffers {row[1]},"
            f" synchronous_commit {row[2]}, fsync {row[3]}"
        )


@contextmanager
def postgres(admin_url: str | None, preload: Sequence[str] = ()) -> Iterator[Server]:
    """A server to work on: the one at `admin_url`, or an embedded one, started
    with the `preload` libraries (a server given must have loaded them itself)."""
    if admin_url:
        server = Server(admin_url, embedded=False)
        try:
            yield server
        finally:
            server.drop_all()
        return
    from api.runtime.embedded import embedded_server

    with tempfile.TemporaryDirectory(prefix="smsq-bench-") as tmp:
        if preload:
            # Libraries load at start: set them, then start the server again.
            with (
                embedded_server(Path(tmp), database="postgres") as url,
                psycopg.connect(url, autocommit=True) as conn,
            ):
                conn.execute(
                    sql.SQL("ALTER SYSTEM SET shared_preload_libraries = {}").format(
                        sql.SQL(", ").join(sql.Literal(name) for name in preload)
                    )
                )
        with embedded_server(Path(tmp), database="postgres", cleanup="delete") as url:
            yield Server(url, embedded=True)


@contextmanager
def process(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A child in a session of its own, stopped (then killed) with all its children."""
    out = log.open("ab") if log else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            list(argv),
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
    try:
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], grace: float = 10) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s:\n{log.read_text()}")


def port(host: str = "127.0.0.1") -> int:
    return free_port(host)


def process_tree(pid: int) -> list[psutil.Process]:
    """A process and its children (alive ones); none when the process is gone."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_cpu_seconds(pid: int) -> float:
    """CPU time used so far by a process and its children (alive ones)."""
    total = 0.0
    for p in process_tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = p.cpu_times()
            total += times.user + times.system
    return total


class LoopUse(NamedTuple):
    """What the thread that runs a server's event loop has used so far."""

    cpu: float
    """CPU seconds."""
    waits: int
    """Times it gave up the processor to wait (voluntary context switches): for
    the network, or for a lock another thread holds (under granian, the
    interpreter's)."""

    def since(self, earlier: LoopUse) -> LoopUse:
        """What was used between `earlier` and this reading."""
        return LoopUse(self.cpu - earlier.cpu, self.waits - earlier.waits)


def event_loop(server: int) -> psutil.Process | None:
    """The one worker process of the server `server` (granian forks one per
    worker), whose main thread runs the event loop; None when it has several,
    or none."""
    workers = psutil.Process(server).children()
    return workers[0] if len(workers) == 1 else None


def loop_use(process: psutil.Process) -> LoopUse | None:
    """The use so far of `process`'s main thread; None when the process is gone,
    or where the system does not count a thread's waits (Linux does, in /proc)."""
    status = Path(f"/proc/{process.pid}/task/{process.pid}/status")
    try:
        main = next((t for t in process.threads() if t.id == process.pid), None)
        waits = voluntary_switches(status.read_text())
    except (psutil.NoSuchProcess, FileNotFoundError):
        return None
    if main is None:
        return None
    return LoopUse(main.user_time + main.system_time, waits)


# What the server has written: the WAL position, and its snapshot's xmax, one
# past the last transaction id to have ended, whose growth counts the ids
# handed out (to within the transactions in flight at either reading). Each
# transaction that changes or locks a row, or sends a notification, takes one
# and writes a commit record; reading ones take none. Both are the whole
# server's, which on the embedded server is the benchmark's alone.
_WRITTEN = """
SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, pg_snapshot_xmax(pg_current_snapshot())::text
"""


def written(url: str) -> tuple[int, int]:
    """The server's WAL position in bytes, and its snapshot's xmax (see above)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(_WRITTEN).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def thread_waits(pid: int) -> dict[int, int] | None:
    """Each thread's waits so far, by thread id, for a process and its children
    (alive ones): the times it gave up the processor to wait, for the network,
    a disk, a lock, or a wake-up from another thread. None where the system
    does not count them (Linux does, in /proc)."""
    if not Path("/proc/self/task").is_dir():
        return None
    counts: dict[int, int] = {}
    for process in process_tree(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for task in Path(f"/proc/{process.pid}/task").iterdir():
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    counts[int(task.name)] = voluntary_switches((task / "status").read_text())
    return counts


def waits_since(before: Mapping[int, int], after: Mapping[int, int]) -> int:
    """The waits between two readings of `thread_waits`, of the threads alive at
    the second: each since the first, or since it began. A thread that ended
    between them is not counted (its last count is gone with it); one that took
    an ended thread's id is counted from that thread's count, or in full when
    its own is lower."""
    total = 0
    for thread, count in after.items():
        earlier = before.get(thread, 0)
        # A lower count is another thread that took a finished one's id.
        total += count - earlier if count >= earlier else count
    return total


def voluntary_switches(status: str) -> int:
    """The `voluntary_ctxt_switches` count of a /proc `status` file."""
    for line in status.splitlines():
        name, _, value = line.partition(":")
        if name == "voluntary_ctxt_switches":
            return int(value)
    raise ValueError("no voluntary_ctxt_switches in this status")


def disk_read() -> int:
    """Bytes this machine has read from its disks since it started."""
    counters = psutil.disk_io_counters()
    return 0 if counters is None else int(counters.read_bytes)


def postmaster(url: str) -> int | None:
    """The PostgreSQL server's main process, when it runs on this machine."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        # Asked while the connection is open: its backend exits when it closes.
        try:
            parent = psutil.Process(int(row[0]) if row else -1).parent()
        except psutil.Error:
            return None
    return parent.pid if parent is not None and "postgres" in parent.name() else None


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = psutil.virtual_memory().total / 2**30
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {memory:.0f} GiB, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def load_note() -> str:
    one, five, _ = os.getloadavg()
    cpus = os.cpu_count() or 1
    busy = " (BUSY: other work is running, figures will be noisy)" if one > 0.5 * cpus else ""
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min){busy}"


def header(title: str, server: Server | None = None) -> None:
    print(f"# {title}")
    print(f"machine: {machine()}")
    if server is not None:
        print(f"database: {server.describe()}")
    print(f"before the run: {load_note()}")
    print(flush=True)


def run(
    title: str,
    args: Any,
    bench: Callable[[Server, Any, Path], int],
    preload: Sequence[str] = (),
) -> NoReturn:
    """Run `bench(server, args, scratch)` on a PostgreSQL (`args.database_url`, else
    an embedded one, with the `preload` libraries) with a scratch directory, under
    `title`; exit with its status. SIGTERM stops it as Ctrl-C does, every `finally` run."""
    stop_on_sigterm()
    with (
        postgres(args.database_url, preload) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        header(title, server)
        raise SystemExit(bench(server, args, Path(tmp)))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table, numbers right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    numeric = [all(_is_number(r[i]) for r in cells) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True)
        ]
        return "| " + " | ".join(parts) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if n else "-" * (w + 2)
            for w, n in zip(widths, numeric, strict=True)
        )
        + "|"
    )
    return "\n".join([line(headers), rule, *(line(r) for r in cells)])


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        if value >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _is_number(text: str) -> bool:
    return text.replace(",", "").replace(".", "").replace("x", "").replace("-", "").isdigit()


def percentile(values: list[float], p: float) -> float:
    """The value at the p-th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "n/a"


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        sys.exit(f"{tool} is required for this benchmark and was not found on PATH: {hint}")
    return path
