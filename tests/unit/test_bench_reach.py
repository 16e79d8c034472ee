"""The benchmarks' bounds: what half of a statement's own rate leaves one
worker's event loop over the least any request for it must cost, and what the
verifier's goal leaves the cores over the least any verifier spends an event."""

from __future__ import annotations

import pytest

from bench.query import Sql, reach
from bench.verify import Floor
from bench.verify import reach as verify_reach


def test_the_budget_over_the_floor_is_what_the_route_itself_may_cost() -> None:
    # /healthz costs the loop 140 µs; the yardstick's client 100 µs a query at
    # 5,000 q/s: half that rate leaves 400 µs a request, 160 over the floor of
    # 240. At 10,000 q/s the budget is 200 µs, under the floor: out of reach.
    headers, rows = reach(
        140.0,
        [
            ("a page", 700.0, Sql(0.2, 0.5, 5_000.0, 100.0)),
            ("one", 600.0, Sql(0.1, 0.3, 10_000.0, 100.0)),
        ],
    )
    columns = [dict(zip(headers, row, strict=True)) for row in rows]
    assert columns[0]["floor µs/req"] == pytest.approx(240)
    assert columns[0]["over the floor"] == pytest.approx(460)
    assert columns[0]["budget at 0.5x"] == pytest.approx(400)
    assert columns[0]["budget over the floor"] == pytest.approx(160)
    assert columns[1]["budget at 0.5x"] == pytest.approx(200)
    assert columns[1]["budget over the floor"] == pytest.approx(-40)


def test_the_verifier_budget_is_the_cores_cpu_at_the_goal_rate_over_its_floor() -> None:
    # 200,000 events/s on 2 cores leaves 10 µs of CPU an event. A floor of
    # 4 + 2 + 1.5 + 1 = 8.5 µs leaves 1.5 of it; a verifier spending 15 µs
    # spends 6.5 over the floor. On one core the budget, 5 µs, is under it.
    floor = Floor(server=4.0, receive=2.0, sha256=1.5, decode=1.0)
    headers, rows = verify_reach(2, 15.0, floor)
    (row,) = (dict(zip(headers, r, strict=True)) for r in rows)
    assert row["floor µs/event"] == pytest.approx(8.5)
    assert row["over the floor"] == pytest.approx(6.5)
    assert row["budget at 200,000/s on 2 cores"] == pytest.approx(10)
    assert row["budget over the floor"] == pytest.approx(1.5)
    headers, rows = verify_reach(1, 15.0, floor)
    assert dict(zip(headers, rows[0], strict=True))["budget over the floor"] == pytest.approx(-3.5)
