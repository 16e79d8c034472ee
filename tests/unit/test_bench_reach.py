"""The read-path benchmark's bound: what half of a statement's own rate leaves
one worker's event loop, over the least any request for it must cost."""

from __future__ import annotations

import pytest

from bench.query import Sql, reach


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
