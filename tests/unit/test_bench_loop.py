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

from bench.harness import LoopUse, event_loop, loop_use, tree_waits, voluntary_switches
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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts from /proc")
def test_a_servers_waits_count_its_childrens_threads() -> None:
    # The parent sleeps through; its child wakes 300 times a millisecond apart.
    child = "import time\nfor _ in range(300): time.sleep(0.001)\ntime.sleep(60)"
    code = (
        "import subprocess, sys, time\n"
        f"kid = subprocess.Popen([sys.executable, '-c', {child!r}])\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE) as proc:
        parent = psutil.Process(proc.pid)
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"ready\n"
            before = tree_waits(proc.pid)
            time.sleep(1.0)
            assert tree_waits(proc.pid) - before >= 200
        finally:
            for process in [*parent.children(), parent]:
                process.kill()


def test_waits_of_a_process_that_is_gone_are_none() -> None:
    with subprocess.Popen([sys.executable, "-c", "pass"]) as proc:
        proc.wait()
    assert tree_waits(proc.pid) == 0


def turn(loop_us: float | None) -> Turn:
    return Turn(1_000, 700, 300, 20, 50, 90, 1_500, loop_us, None if loop_us is None else 1.2)


def test_a_pair_gives_the_loop_median_only_when_every_turn_read_it() -> None:
    assert loop_median([turn(600), turn(800), turn(700)], "loop_us", "{:,.0f}") == "700"
    assert loop_median([turn(600), turn(None)], "loop_us", "{:,.0f}") == "n/a"
    assert loop_median([turn(600), turn(None)], "loop_waits", "{:.2f}") == "n/a"
