"""Times as the API writes them: RFC 3339, UTC, milliseconds, `Z`."""

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from projections.log import rfc3339

MOMENT = datetime(2026, 11, 24, 10, 15, 2, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    "moment",
    [
        MOMENT,
        MOMENT.astimezone(ZoneInfo("Etc/UTC")),
        MOMENT.astimezone(ZoneInfo("Asia/Kolkata")),
        MOMENT.astimezone(timezone(timedelta(hours=-7))),
    ],
    ids=["timezone.utc", "a UTC zone", "+05:30", "-07:00"],
)
def test_any_zone_is_written_in_utc_with_milliseconds(moment: datetime) -> None:
    assert rfc3339(moment) == "2026-11-24T10:15:02.123Z"


def test_a_whole_second_keeps_its_milliseconds() -> None:
    assert rfc3339(MOMENT.replace(microsecond=0)) == "2026-11-24T10:15:02.000Z"
