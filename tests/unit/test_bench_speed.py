"""The cost curves read ingest speed run by run, each run over the control
measured right after it, so that the machine's drift between runs cancels."""

from __future__ import annotations

import pytest

from bench.curves import ingest_figures, speed
from bench.ingest import Maximum
from bench.wrk import Run


def maximum(rps: float, app_cpu: float = 1.0, db_cpu: float | None = 0.5) -> Maximum:
    run = Run(
        requests=round(rps * 10),
        seconds=10.0,
        p50_ms=1.0,
        p99_ms=rps / 100,
        errors=0,
        statuses={201: round(rps * 10)},
    )
    return Maximum(run=run, app_cpu=app_cpu, db_cpu=db_cpu, disk_read=4096, loop=None)


def test_speed_is_the_median_of_each_run_over_its_own_control() -> None:
    # The machine doubles its speed between the first pair and the last; in
    # the second, the run falls to half its control. Run by run, the size keeps
    # up with its controls; the ratio of the medians (1,100 / 2,000) would read
    # the drift as a slowdown of 45 %.
    pairs = [
        (maximum(1_000), maximum(1_000)),
        (maximum(1_100), maximum(2_200)),
        (maximum(2_000), maximum(2_000)),
    ]
    figures = ingest_figures(pairs, drains=[0.5, 2.0, 1.0])
    assert speed({"ingest": figures}) == pytest.approx(1.0)
    assert figures["rps"] == pytest.approx(1_100)
    assert figures["control_rps"] == pytest.approx(2_000)
    assert figures["fold_s"] == 2.0
    assert figures["disk_read_bytes"] == 3 * 4096
    # CPU per request over every run: 3 s of CPU for 41,000 requests.
    assert figures["app_cpu_us"] == pytest.approx(3.0 / 41_000 * 1e6)
    assert figures["db_cpu_us"] == pytest.approx(1.5 / 41_000 * 1e6)


def test_no_database_cpu_when_one_run_could_not_see_it() -> None:
    pairs = [(maximum(1_000), maximum(1_000)), (maximum(1_000, db_cpu=None), maximum(1_000))]
    assert ingest_figures(pairs, drains=[0.1, 0.1])["db_cpu_us"] is None


def test_a_maximums_waits_and_writing_transactions_are_given_a_request() -> None:
    read = maximum(100)._replace(waits=6_000, transactions=210)
    assert (read.waits_a_request(), read.transactions_a_request()) == ("6.0", "0.21")
    assert maximum(100).transactions_a_request() == "n/a"
    assert maximum(100).waits_a_request() == "n/a"
