"""Settings, read once from `SMSQ_*` environment variables and checked at start."""

from __future__ import annotations

import difflib
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import platformdirs
from msgspec import Meta

from domain.commands import MAX_MEDIA_PER_MESSAGE

PREFIX = "SMSQ_"

Positive = Meta(ge=1)

# A bucket's name as S3 allows it, then an optional prefix.
MediaUrl = Annotated[str, Meta(pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")]


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: Annotated[
        str | None,
        Meta(description="PostgreSQL URL; unset: an embedded server under SMSQ_DATA_DIR"),
    ] = None
    owner_url: Annotated[
        str | None,
        Meta(
            description="PostgreSQL URL of the schema's owner, for migrations, replays and keys;"
            " unset: SMSQ_DATABASE_URL (then the service switches to smsq_service after migrating)"
        ),
    ] = None
    seal_key_file: Annotated[
        Path | None,
        Meta(
            description="Ed25519 private key (PEM, mode 0600) that signs the seals; unset:"
            " seal-key.pem under SMSQ_DATA_DIR, made on first start"
        ),
    ] = None
    data_dir: Annotated[
        Path, Meta(description="where the embedded database and the media files live")
    ] = Path(platformdirs.user_data_dir("smsq"))
    media_url: Annotated[
        MediaUrl | None,
        Meta(
            description="where image bytes live: s3://bucket/prefix (with the AWS_* variables);"
            " unset: SMSQ_DATA_DIR/media",
        ),
    ] = None
    host: Annotated[str, Meta(description="address `smsq serve` listens on")] = "127.0.0.1"
    port: Annotated[int, Meta(ge=1, le=65535, description="port `smsq serve` listens on")] = 8000
    workers: Annotated[int, Positive, Meta(description="HTTP worker processes")] = 1
    http2: Annotated[
        bool,
        Meta(
            description="whether `smsq serve` also speaks cleartext HTTP/2; off: HTTP/1.1"
            " only, where SMSQ_HEADER_TIMEOUT holds from a connection's accept"
        ),
    ] = False
    header_timeout: Annotated[
        float,
        Meta(
            ge=0.1,
            le=300,
            description="seconds a connection may take, from its accept or from its last"
            " answer, to send a request's headers before it is closed",
        ),
    ] = 10.0
    max_connections: Annotated[
        int,
        Meta(ge=16, description="most open connections per HTTP worker process; more wait"),
    ] = 10_000
    stop_grace: Annotated[
        float,
        Meta(
            ge=1,
            le=600,
            description="seconds a stop may take (requests in flight answered, batches"
            " ended) before the process is ended by force",
        ),
    ] = 10.0
    pool_max: Annotated[
        int, Positive, Meta(description="most database connections per process")
    ] = 10
    db_timeout: Annotated[
        float, Meta(gt=0, description="seconds to wait for the database before answering 503")
    ] = 5.0
    statement_timeout: Annotated[
        float,
        Meta(
            gt=0,
            description="seconds a statement of the service's pool may run before PostgreSQL"
            " cancels it",
        ),
    ] = 30.0
    batch_max: Annotated[
        int, Positive, Meta(description="most POST /messages committed in one transaction")
    ] = 64
    batch_concurrency: Annotated[
        int, Positive, Meta(description="group-commit transactions in flight per process")
    ] = 4
    body_timeout: Annotated[
        float, Meta(gt=0, description="seconds a client may take to send a request body")
    ] = 10.0
    max_body_bytes: Annotated[
        int, Positive, Meta(description="largest JSON request body accepted, in bytes")
    ] = 16384
    max_media_bytes: Annotated[
        int, Positive, Meta(description="largest image accepted per file, in bytes")
    ] = 5 * 1024 * 1024
    max_media_per_message: Annotated[
        int,
        Positive,
        Meta(description="most images one message may have; an upload past it answers 409"),
    ] = MAX_MEDIA_PER_MESSAGE
    max_uploads_in_flight: Annotated[
        int,
        Positive,
        Meta(description="uploads read at once per process; more answer 503 with Retry-After"),
    ] = 16
    max_upload_bytes_in_flight: Annotated[
        int,
        Positive,
        Meta(
            description="bytes of upload bodies read at once per process (by Content-Length;"
            " without one, the largest body an upload may have); more answer 503"
        ),
    ] = 256 * 1024 * 1024
    media_budget_bytes: Annotated[
        Annotated[int, Positive] | None,
        Meta(
            description="most bytes of images the store may hold (every host together);"
            " an upload past it answers 507; unset: no budget"
        ),
    ] = None
    media_min_free_bytes: Annotated[
        int,
        Meta(
            ge=0,
            description="free space an upload must leave on the media directory's file"
            " system, or it answers 507 (0: no floor; a bucket has none)",
        ),
    ] = 1024 * 1024 * 1024
    consistency_wait: Annotated[
        float,
        Meta(
            ge=0,
            le=60,
            description="seconds a read carrying a Consistency-Token waits for the read"
            " models to pass it before answering 503",
        ),
    ] = 2.0
    feed_heartbeat: Annotated[
        float,
        Meta(
            gt=0,
            le=300,
            description="seconds of quiet after which GET /events/stream sends a heartbeat",
        ),
    ] = 15.0
    feed_write_timeout: Annotated[
        float,
        Meta(
            gt=0,
            le=300,
            description="seconds GET /events/stream waits for a client to take what it"
            " was sent (a message, or 64 KiB of a larger batch) before it gives up on it",
        ),
    ] = 10.0
    run_projectors: Annotated[
        bool, Meta(description="whether `smsq serve` also runs projectors and processing")
    ] = True
    run_sealer: Annotated[
        bool,
        Meta(
            description="whether the projectors' processes (`smsq serve`, `smsq worker`) also"
            " run the sealer; false where another host holds the seal key"
        ),
    ] = True
    log_level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR"], Meta(description="log level")
    ] = "INFO"
    log_format: Annotated[
        Literal["json", "text"],
        Meta(description="log lines as JSON objects (one per line) or as plain text"),
    ] = "json"


class SettingsError(ValueError):
    pass


def load_settings(
    environ: Mapping[str, str] | None = None, flags: Mapping[str, str] | None = None
) -> Settings:
    """The settings of the `SMSQ_*` variables, each overridden by its flag in
    `flags` (a setting's name to the value given on the command line)."""
    env = os.environ if environ is None else environ
    flags = flags or {}
    names = {f.name for f in msgspec.structs.fields(Settings)}
    raw = {}
    for key, value in env.items():
        name = key.removeprefix(PREFIX).lower()
        if key.startswith(PREFIX) and name in names and value != "":
            raw[name] = _normalise(name, value)
    raw |= {name: _normalise(name, value) for name, value in flags.items()}
    try:
        return msgspec.convert(raw, Settings, strict=False, dec_hook=_decode)
    except msgspec.ValidationError as error:
        raise SettingsError(_explain(str(error), flags)) from None


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A line for each SMSQ_* variable that is no setting: a misspelt one
    would otherwise be ignored without a word, its default silently used."""
    known = [PREFIX + f.name.upper() for f in msgspec.structs.fields(Settings)]
    lines = []
    for key in sorted(k for k in environ if k.startswith(PREFIX) and k not in known):
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        lines.append(f"{key} is not a setting and is ignored{hint}")
    return lines


def _normalise(name: str, value: str) -> str:
    if name == "log_level":
        return value.upper()
    if name == "log_format":
        return value.lower()
    return value


def _decode(type_: type, value: object) -> object:
    if type_ in (Path, Path | None) and isinstance(value, str):
        return Path(value).expanduser()
    raise NotImplementedError


def _explain(message: str, flags: Mapping[str, str]) -> str:
    # msgspec says "Expected `int` >= 1 - at `$.workers`"; name the flag or variable instead.
    text, _, where = message.partition(" - at `$.")
    name = where.rstrip("`")
    if not name:
        return message
    if name in flags:
        return f"{flag_name(name)} {flags[name]!r}: {text}"
    return f"{PREFIX}{name.upper()}: {text}"


def flag_name(name: str) -> str:
    """The command-line flag of a setting: `--pool-max` for SMSQ_POOL_MAX."""
    return "--" + name.replace("_", "-")


def variable_name(name: str) -> str:
    return PREFIX + name.upper()


def describe() -> str:
    """One line per setting, for `smsq --help`."""
    info = msgspec.inspect.type_info(Settings)
    assert isinstance(info, msgspec.inspect.StructType)
    lines = []
    for field in info.fields:
        schema = getattr(field.type, "extra_json_schema", None) or {}
        doc = schema.get("description", "")
        default = "" if field.default is msgspec.NODEFAULT else f" [default: {field.default}]"
        lines.append(f"{PREFIX}{field.name.upper()}: {doc}{default}")
    return "\n".join(lines)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
