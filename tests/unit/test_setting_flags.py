"""Every setting is also a flag of the commands that use it; a flag wins over its variable."""

from __future__ import annotations

import os
from typing import Any

import click
import msgspec
import pytest
from click.testing import CliRunner

from api.cli.main import main
from api.cli.support import DATABASE, cli_settings, setting_flags
from api.runtime.settings import Settings


@click.command()
def shown() -> None:
    """Prints the settings it was given, as JSON."""
    click.echo(msgspec.json.encode(cli_settings(), enc_hook=str).decode())


setting_flags(shown)


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(shown, list(args))
    return result.exit_code, result.output


def settings_of(*args: str) -> dict[str, Any]:
    # Standard output alone: an SMSQ_ variable that is no setting (the suite's
    # own SMSQ_TEST_BACKEND, say) is named on standard error.
    result = CliRunner().invoke(shown, list(args))
    assert result.exit_code == 0, result.output
    return dict(msgspec.json.decode(result.stdout))


def test_a_flag_wins_over_its_variable_and_the_rest_still_come_from_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SMSQ_PORT", "8001")
    monkeypatch.setenv("SMSQ_HOST", "127.0.0.2")
    monkeypatch.setenv("SMSQ_RUN_PROJECTORS", "true")
    monkeypatch.setenv("SMSQ_POOL_MAX", "7")
    monkeypatch.setenv("SMSQ_WORKERS", "1")
    settings = settings_of(
        "--port", "9000", "--host", "0.0.0.0", "--workers", "4", "--no-run-projectors"
    )
    assert (settings["port"], settings["host"], settings["workers"]) == (9000, "0.0.0.0", 4)
    assert settings["run_projectors"] is False
    assert settings["pool_max"] == 7  # no flag: the variable
    # Given on to the processes the command starts (the HTTP workers read their environment).
    assert os.environ["SMSQ_PORT"] == "9000"
    assert os.environ["SMSQ_RUN_PROJECTORS"] == "false"


def test_flags_are_converted_as_variables_are(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSQ_DATA_DIR", "/srv/smsq")
    monkeypatch.setenv("SMSQ_HTTP2", "false")
    monkeypatch.setenv("SMSQ_STOP_GRACE", "10")
    settings = settings_of("--data-dir", "~/smsq", "--http2", "--stop-grace", "2.5")
    assert settings["data_dir"] == os.path.expanduser("~/smsq")
    assert (settings["http2"], settings["stop_grace"]) == (True, 2.5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "eighty"], "invalid setting: --port 'eighty': Expected `int`"),
        (["--port", "70000"], "invalid setting: --port '70000': Expected `int` <= 65535"),
        (["--workers", "0"], "invalid setting: --workers '0': Expected `int` >= 1"),
        (["--header-timeout", "0"], "invalid setting: --header-timeout '0': Expected `float`"),
        (["--log-level", "loud"], "invalid setting: --log-level 'loud'"),
    ],
)
def test_a_bad_flag_value_is_a_clear_error_naming_the_flag(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMSQ_PORT", "8001")  # a good variable does not hide a bad flag
    code, output = run(*args)
    assert code == 1
    assert f"Error: {message}" in output


def test_smsq_serve_refuses_a_bad_flag_before_starting_anything() -> None:
    result = CliRunner().invoke(main, ["serve", "--port", "eighty"])
    assert result.exit_code == 1
    assert "invalid setting: --port 'eighty'" in result.output


def test_each_command_takes_the_flags_of_the_settings_it_uses() -> None:
    def flags(*path: str) -> set[str]:
        command: click.Command = main
        for name in path:
            assert isinstance(command, click.Group)
            command = command.commands[name]
        return {option for p in command.params for option in p.opts}

    every = {"--" + f.name.replace("_", "-") for f in msgspec.structs.fields(Settings)}
    assert every <= flags("serve")
    database = {"--" + name.replace("_", "-") for name in DATABASE}
    for command in (("migrate",), ("replay",), ("events",), ("verify",), ("keys", "create")):
        assert database <= flags(*command)
        assert "--port" not in flags(*command)
    # The settings the worker's pool and sealer read are flags of it.
    worker = {"--stop-grace", "--pool-max", "--db-timeout", "--statement-timeout"}
    assert {*worker, "--seal-key-file", "--run-sealer", *database} <= flags("worker")
    result = CliRunner().invoke(main, ["migrate", "--port", "9000"])
    assert result.exit_code == 2
    assert "No such option '--port'" in result.output
