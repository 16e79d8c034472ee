"""The benchmarks read the event-loop thread of the server they measure: its CPU
and how often it waited (for the network, or for the interpreter's lock); and
the waits of every thread of a server and its children."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import psutil
import pytest

from bench import ingest
from bench.harness import (
    LoopUse,
    event_loop,
    loop_use,
    thread_waits,
    voluntary_switches,
    waits_since,
)
from bench.pair import Turn, loop_median

STATUS = """Name:\tsmsq
State:\tS (sleeping)
Tgid:\t4242
nonvoluntary_ctxt_switches:\t88
voluntary_ctxt_switches:\t1507
"""


def test_the_waits_are_the_voluntary_switches_not_the_involuntary_ones() -> None:
    assert voluntary_switches(STATUS) == 1507


def test_a_status_without_the_count_is_an_error_not_a_zero() -> None:
    with pytest.raises(ValueError, match="voluntary_ctxt_switches"):
        voluntary_switches("Name:\tsmsq\n")


def test_use_since_an_earlier_reading_subtracts_both_counts() -> None:
    assert LoopUse(2.5, 130).since(LoopUse(1.0, 100)) == LoopUse(1.5, 30)


@contextmanager
def sleepers(count: int) -> Iterator[psutil.Process]:
    """A parent process with `count` children, each asleep."""
    code = (
        "import subprocess, sys, time\n"
        f"kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])"
        f" for _ in range({count})]\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    with (
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE) as proc,
        ExitStack() as stack,
    ):
        parent = psutil.Process(proc.pid)
        stack.callback(lambda: [p.kill() for p in [*parent.children(), parent]])
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        yield parent


def test_the_loop_runs_in_the_one_worker_and_is_not_guessed_otherwise() -> None:
    with sleepers(1) as server:
        loop = event_loop(server.pid)
        assert loop is not None
        assert loop.pid == server.children()[0].pid
    with sleepers(0) as server:
        assert event_loop(server.pid) is None
    with sleepers(2) as server:
        assert event_loop(server.pid) is None


def test_a_worker_that_is_gone_is_not_read() -> None:
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as proc:
        worker = psutil.Process(proc.pid)
        assert loop_use(worker) is not None
        proc.kill()
        proc.wait()
        assert loop_use(worker) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts from /proc")
def test_a_thread_that_sleeps_is_counted_waiting_and_one_that_computes_is_not() -> None:
    me = psutil.Process(os.getpid())
    before = loop_use(me)
    sum(i * i for i in range(200_000))
    computed = loop_use(me)
    for _ in range(20):
        time.sleep(0.001)
    slept = loop_use(me)
    assert before is not None
    assert computed is not None
    assert slept is not None
    assert slept.since(computed).waits >= 20
    assert computed.since(before).waits < 20


def test_waits_since_count_each_thread_alive_at_the_end_from_its_first_reading() -> None:
    before = {10: 100, 11: 50, 12: 7}
    after = {10: 130, 12: 9, 13: 40}  # 11 ended; 13 began
    assert waits_since(before, after) == 30 + 2 + 40
    # An id taken again by a new thread reads lower than the old one's count.
    assert waits_since({10: 100}, {10: 3}) == 3


CHILD = """
import sys, threading, time
def work():
    for _ in range(300):
        time.sleep(0.001)
    print("done", flush=True)
    time.sleep(60)  # alive when read: an ended thread is not counted
print("ready", flush=True)
sys.stdin.readline()
threading.Thread(target=work).start()
time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts from /proc")
def test_a_servers_waits_count_the_threads_of_its_children() -> None:
    # The parent sleeps through; its child, once told, starts a thread that
    # wakes 300 times a millisecond apart.
    parent_code = (
        f"import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', {CHILD!r}]).wait()"
    )
    with subprocess.Popen(
        [sys.executable, "-c", parent_code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as proc:
        parent = psutil.Process(proc.pid)
        try:
            assert proc.stdin is not None
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"ready\n"
            before = thread_waits(proc.pid)
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == b"done\n"
            after = thread_waits(proc.pid)
            assert before is not None
            assert after is not None
            assert waits_since(before, after) >= 300
        finally:
            for process in [*parent.children(recursive=True), parent]:
                process.kill()


def test_where_threads_are_not_counted_the_waits_read_not_available(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ingest, "thread_waits", lambda pid: None)
    assert ingest.both_waits(os.getpid(), None) is None
    assert ingest.waits_between(None, None) is None
    assert ingest.waits_between({1: 5}, {1: 9}) == 4


def test_a_process_that_is_gone_has_no_threads_to_count() -> None:
    with subprocess.Popen([sys.executable, "-c", "pass"]) as proc:
        proc.wait()
    assert not thread_waits(proc.pid)


def turn(loop_us: float | None) -> Turn:
    return Turn(1_000, 700, 300, 20, 50, 90, 1_500, loop_us, None if loop_us is None else 1.2)


def test_a_pair_gives_the_loop_median_only_when_every_turn_read_it() -> None:
    assert loop_median([turn(600), turn(800), turn(700)], "loop_us", "{:,.0f}") == "700"
    assert loop_median([turn(600), turn(None)], "loop_us", "{:,.0f}") == "n/a"
    assert loop_median([turn(600), turn(None)], "loop_waits", "{:.2f}") == "n/a"
