from pathlib import Path

import pytest
from click.testing import CliRunner

from api.cli.main import main
from api.runtime.settings import SettingsError, describe, load_settings, unknown_variables


def test_defaults_need_no_environment() -> None:
    settings = load_settings({})
    assert (settings.database_url, settings.host, settings.port) == (None, "127.0.0.1", 8000)


def test_values_are_read_from_smsq_variables_and_converted() -> None:
    settings = load_settings(
        {
            "SMSQ_PORT": "9000",
            "SMSQ_DATA_DIR": "/srv/smsq",
            "SMSQ_RUN_PROJECTORS": "false",
            "SMSQ_LOG_LEVEL": "debug",
            "SMSQ_MAX_MEDIA_BYTES": "1048576",
            "OTHER": "x",
        }
    )
    assert settings.port == 9000
    assert settings.data_dir == Path("/srv/smsq")
    assert settings.run_projectors is False
    assert settings.log_level == "DEBUG"
    assert settings.max_media_bytes == 1048576


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SMSQ_PORT": "eighty"}, "SMSQ_PORT: Expected `int`"),
        ({"SMSQ_PORT": "70000"}, "SMSQ_PORT: Expected `int` <= 65535"),
        ({"SMSQ_WORKERS": "0"}, "SMSQ_WORKERS: Expected `int` >= 1"),
        ({"SMSQ_LOG_LEVEL": "loud"}, "SMSQ_LOG_LEVEL"),
        ({"SMSQ_MAX_MEDIA_BYTES": "0"}, "SMSQ_MAX_MEDIA_BYTES: Expected `int` >= 1"),
        ({"SMSQ_MEDIA_URL": "/srv/media"}, "SMSQ_MEDIA_URL: Expected `str` matching"),
        ({"SMSQ_MEDIA_URL": "s3://"}, "SMSQ_MEDIA_URL: Expected `str` matching"),
        ({"SMSQ_MEDIA_URL": "s3://Bad_Bucket/x"}, "SMSQ_MEDIA_URL: Expected `str` matching"),
        ({"SMSQ_MEDIA_URL": "gs://bucket/x"}, "SMSQ_MEDIA_URL: Expected `str` matching"),
    ],
)
def test_a_bad_value_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("`", ".")):
        load_settings(env)


@pytest.mark.parametrize("url", ["s3://smsq-media", "s3://smsq-media/prod/images", "s3://a.b-c"])
def test_media_may_live_in_a_bucket(url: str) -> None:
    assert load_settings({"SMSQ_MEDIA_URL": url}).media_url == url
    assert load_settings({}).media_url is None  # the directory under SMSQ_DATA_DIR


def test_the_upload_limits() -> None:
    defaults = load_settings({})
    assert (
        defaults.max_media_per_message,
        defaults.max_uploads_in_flight,
        defaults.max_upload_bytes_in_flight,
        defaults.media_budget_bytes,
        defaults.media_min_free_bytes,
    ) == (10, 16, 256 * 1024 * 1024, None, 1024 * 1024 * 1024)
    given = load_settings({"SMSQ_MEDIA_BUDGET_BYTES": "1000", "SMSQ_MEDIA_MIN_FREE_BYTES": "0"})
    assert (given.media_budget_bytes, given.media_min_free_bytes) == (1000, 0)
    for name, value in [
        ("SMSQ_MEDIA_BUDGET_BYTES", "0"),
        ("SMSQ_MEDIA_MIN_FREE_BYTES", "-1"),
        ("SMSQ_MAX_UPLOADS_IN_FLIGHT", "0"),
        ("SMSQ_MAX_MEDIA_PER_MESSAGE", "0"),
    ]:
        with pytest.raises(SettingsError, match=name):
            load_settings({name: value})


def test_help_lists_every_setting_with_its_default() -> None:
    text = describe()
    assert "SMSQ_DATABASE_URL:" in text
    assert "SMSQ_PORT: port `smsq serve` listens on [default: 8000]" in text


def test_the_statement_timeout_and_logging_settings() -> None:
    settings = load_settings({"SMSQ_STATEMENT_TIMEOUT": "2.5", "SMSQ_LOG_FORMAT": "TEXT"})
    assert (settings.statement_timeout, settings.log_format) == (2.5, "text")
    assert (load_settings({}).log_format, load_settings({}).statement_timeout) == ("json", 30.0)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SMSQ_STATEMENT_TIMEOUT": "0"}, "SMSQ_STATEMENT_TIMEOUT: Expected `float` > 0"),
        ({"SMSQ_LOG_FORMAT": "xml"}, "SMSQ_LOG_FORMAT"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("`", ".")):
        load_settings(env)


def test_a_misspelt_variable_is_named_with_the_setting_it_resembles() -> None:
    env = {"SMSQ_MAX_MEDIA_BYTE": "1", "SMSQ_ZZZ": "x", "SMSQ_PORT": "9000", "HOME": "/root"}
    assert unknown_variables(env) == [
        "SMSQ_MAX_MEDIA_BYTE is not a setting and is ignored (did you mean SMSQ_MAX_MEDIA_BYTES?)",
        "SMSQ_ZZZ is not a setting and is ignored",
    ]


def test_the_command_line_names_a_bad_setting_and_a_misspelt_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SMSQ_STATEMENT_TIMEOUT", "0")
    monkeypatch.setenv("SMSQ_LOG_LEVL", "DEBUG")
    result = CliRunner().invoke(main, ["migrate"])
    assert result.exit_code == 1
    assert "smsq: warning: SMSQ_LOG_LEVL is not a setting and is ignored (did you mean" in (
        result.output
    )
    assert "Error: invalid setting: SMSQ_STATEMENT_TIMEOUT: Expected `float` > 0.0" in (
        result.output
    )
