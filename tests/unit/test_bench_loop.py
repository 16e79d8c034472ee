"""The benchmarks read the event-loop thread of the server they measure: its CPU
and how often it waited (for the network, or for the interpreter's lock)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import psutil
import pytest

from bench.harness import LoopUse, event_loop, loop_use, voluntary_switches

STATUS = """Name:\tsmsq
State:\tS (sleeping)
Tgid:\t4242
voluntary_ctxt_switches:\t1507
nonvoluntary_ctxt_switches:\t88
"""


def test_the_waits_are_the_voluntary_switches_not_the_involuntary_ones() -> None:
    assert voluntary_switches(STATUS) == 1507


def test_a_status_without_the_count_is_an_error_not_a_zero() -> None:
    with pytest.raises(ValueError, match="voluntary_ctxt_switches"):
        voluntary_switches("Name:\tsmsq\n")


def test_use_since_an_earlier_reading_subtracts_both_counts() -> None:
    assert LoopUse(2.5, 130).since(LoopUse(1.0, 100)) == LoopUse(1.5, 30)
    assert LoopUse(2.5, None).since(LoopUse(1.0, 100)).waits is None


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
    with ExitStack() as stack:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        stack.callback(proc.wait)
        parent = psutil.Process(proc.pid)
        stack.callback(lambda: [p.kill() for p in [*parent.children(), parent]])
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        yield parent


def test_the_loop_runs_in_the_one_worker_or_in_a_server_without_one() -> None:
    with sleepers(1) as server:
        loop = event_loop(server.pid)
        assert loop is not None
        assert loop.pid == server.children()[0].pid
    with sleepers(0) as server:
        loop = event_loop(server.pid)
        assert loop is not None
        assert loop.pid == server.pid
    with sleepers(2) as server:
        assert event_loop(server.pid) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts from /proc")
def test_a_thread_that_sleeps_is_counted_waiting_and_one_that_spins_is_not() -> None:
    me = psutil.Process(os.getpid())
    before = loop_use(me)
    for _ in range(20):
        psutil.Process().status()  # a read from /proc: no wait
    spun = loop_use(me).since(before)
    before = loop_use(me)
    for _ in range(20):
        subprocess.run(["true"], check=True)  # waits for each child to end
    slept = loop_use(me).since(before)
    assert spun.waits is not None
    assert slept.waits is not None
    assert slept.waits >= 20 > spun.waits
