"""The cost curves list each query run that passed 100 ms at p99 with the share
of it the worker's event loop was on the CPU: a saturated worker tells itself
apart from a queue behind something else."""

from __future__ import annotations

from typing import Any

from bench.curves import QUERIES, slow_runs


def point(
    messages: int, p99s: dict[str, list[float]], busy: list[float | None] | None
) -> dict[str, Any]:
    queries: dict[str, Any] = {}
    for q in QUERIES:
        runs = p99s.get(q, [5.0, 6.0, 7.0])
        queries[q] = {"p99_runs_ms": runs}
        if busy is not None:
            queries[q]["loop_busy_runs"] = busy
    return {"messages": messages, "queries": queries}


def test_only_the_runs_past_the_line_are_listed_with_their_loops_share() -> None:
    first, second = QUERIES[0], QUERIES[2]
    points = [
        point(100_000, {}, [0.5, 0.6, 0.7]),
        point(
            1_000_000, {first: [100.7, 34.6, 137.2], second: [3.5, 193.0, 100.0]}, [0.95, 0.4, 0.9]
        ),
    ]
    assert slow_runs(points) == [
        [1_000_000, first, 100.7, 95.0],
        [1_000_000, first, 137.2, 90.0],
        [1_000_000, second, 193.0, 40.0],
    ]


def test_curves_written_before_the_loop_was_read_list_their_slow_runs_without_it() -> None:
    points = [point(10_000_000, {QUERIES[1]: [250.0, 4.0, 5.0]}, busy=None)]
    assert slow_runs(points) == [[10_000_000, QUERIES[1], 250.0, ""]]


def test_a_run_the_loop_could_not_be_read_for_shows_an_empty_share() -> None:
    points = [point(100_000, {QUERIES[3]: [120.0, 4.0, 5.0]}, [None, 0.5, 0.5])]
    assert slow_runs(points) == [[100_000, QUERIES[3], 120.0, ""]]
