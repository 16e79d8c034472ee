import json
import logging
import sys

from api.runtime.logs import JsonFormatter


def test_a_record_becomes_one_json_line_with_its_extra_fields() -> None:
    record = logging.makeLogRecord(
        {
            "name": "smsq.access",
            "levelname": "INFO",
            "msg": "GET %s %d",
            "args": ("/healthz", 200),
            "created": 1795000000.5,
            "request_id": "r-1",
            "status": 200,
        }
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert json.loads(line) == {
        "time": "2026-11-18T11:06:40.500Z",
        "level": "INFO",
        "logger": "smsq.access",
        "message": "GET /healthz 200",
        "request_id": "r-1",
        "status": 200,
    }


def test_an_exception_is_kept_in_the_same_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed", None, exc_info=sys.exc_info()
        )
    entry = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in entry["exception"]
