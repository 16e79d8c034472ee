"""A stop that hangs is ended by force at the end of its grace period, however
many signals come; one that does not hang is never forced."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from api.runtime.stopping import FORCED

# A process that takes the signals with a Stop, then hangs (or, told to, stops
# at once when the stop begins). On force it also runs a clean-up, which
# writes a file, and kills the child it started.
PROGRAM = """
import os, subprocess, sys, threading
from api.runtime.stopping import stop_on_signals

hang, marker = sys.argv[1] == "hang", sys.argv[2]
done = threading.Event()
child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE)
child.stdout.readline()  # it ignores the signals from here on
stop = stop_on_signals(GRACE, done.set if not hang else lambda: None)
stop.on_force(lambda: open(marker, "w").write("halted"))
print(child.pid, flush=True)
done.wait()
child.kill()
print("stopped", flush=True)
"""
# The child ignores the signals sent to the group: only a kill ends it.
CHILD = (
    "import signal, time; "
    "[signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)]; "
    "print('ready', flush=True); time.sleep(600)"
)
GRACE = 1.5


def run(tmp_path: Path, hang: bool, signals: list[signal.Signals]) -> tuple[int, float, str]:
    marker = tmp_path / "halted"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            PROGRAM.replace("GRACE", str(GRACE)).replace("CHILD", repr(CHILD)),
            "hang" if hang else "stop",
            str(marker),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    started = time.monotonic()
    for signum in signals:
        os.killpg(proc.pid, signum)
    out, err = proc.communicate(timeout=GRACE + 10)
    took = time.monotonic() - started
    assert not child_alive(child), "the child was left behind"
    return proc.returncode, took, err + out + (marker.read_text() if marker.exists() else "")


def child_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


@pytest.mark.parametrize(
    "signals",
    [[signal.SIGTERM], [signal.SIGTERM, signal.SIGINT, signal.SIGTERM]],
    ids=["one signal", "three at once"],
)
def test_a_hung_stop_is_ended_by_force_within_its_grace_period(
    tmp_path: Path, signals: list[signal.Signals]
) -> None:
    code, took, output = run(tmp_path, hang=True, signals=signals)
    assert code == FORCED
    assert GRACE - 1 <= took < GRACE + 0.5
    assert "forced exit" in output
    assert "halted" in output  # the clean-up ran


def test_a_stop_that_ends_is_not_forced(tmp_path: Path) -> None:
    code, took, output = run(tmp_path, hang=False, signals=[signal.SIGINT, signal.SIGTERM])
    assert code == 0
    assert took < GRACE - 1
    assert "stopped" in output
    assert "forced exit" not in output


# A process held in the last of its exit, after the interpreter has put back
# the default actions of the signals it handled: a finalizer that sleeps.
EXITING = """
import gc, time
from api.runtime.stopping import stop_on_signals
gc.disable()
class Exiting:
    def __del__(self):
        print("finalizing", flush=True)
        time.sleep(1)
cycle = Exiting()
cycle.me = cycle  # freed only by the collection at the very end
del cycle
stop_on_signals(GRACE, lambda: None)
print("ready", flush=True)
"""


def test_a_signal_that_comes_during_the_exit_does_not_end_it() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", EXITING.replace("GRACE", str(GRACE))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    assert proc.stdout.readline() == "finalizing\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
