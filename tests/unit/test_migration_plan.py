import pytest

from migrations import MigrationError, available, pending
from migrations.runner import Migration

A, B = Migration("0001_a", "select 1"), Migration("0002_b", "select 2")


def test_nothing_applied_means_everything_pending_in_order() -> None:
    assert pending({}, [A, B]) == [A, B]


def test_applied_migrations_are_skipped() -> None:
    assert pending({A.name: A.checksum}, [A, B]) == [B]


def test_an_edited_applied_migration_is_refused() -> None:
    with pytest.raises(MigrationError, match="0001_a was changed"):
        pending({A.name: "something else"}, [A, B])


def test_a_database_ahead_of_the_code_is_refused() -> None:
    with pytest.raises(MigrationError, match="does not know"):
        pending({"0009_future": "x"}, [A, B])


def test_the_shipped_migrations_have_distinct_numbers_in_order() -> None:
    # Branches reserve their numbers ahead of merging, so a number may be
    # missing for a while; two files with one number never may.
    numbers = [int(m.name[:4]) for m in available()]
    assert numbers == sorted(set(numbers))
    assert numbers[0] == 1
