"""The SQL folds and the events agree: every JSON key a fold reads is a key of
the current version of the events it reads it from, and the folds read the log
only through `current_events`, where every event is in its current version.

A fold reading a key that an event no longer has would fold NULLs without a
word; this test is where that shows instead.
"""

from __future__ import annotations

import re

import msgspec
import pytest

from domain.events import EVENT_TYPES, Event
from projections.catalog import read_models
from projections.fold import SqlFold

# `value->>'key'` and `value->'key'`, the value a name or a qualified name.
JSON_KEY = re.compile(r"([A-Za-z_][\w.]*)\s*->>?\s*'([^']*)'")

FOLDS = [m for m in read_models().values() if isinstance(m, SqlFold)]


def encoded_keys(kind: type[Event]) -> set[str]:
    """The keys of the current version's JSON, as msgspec writes them."""
    return {field.encode_name for field in msgspec.structs.fields(kind)}


def test_every_read_model_is_one_sql_fold() -> None:
    assert [m.name for m in FOLDS] == list(read_models())


@pytest.mark.parametrize("fold", FOLDS, ids=lambda f: f.name)
def test_every_key_a_fold_reads_is_in_the_current_encoding(fold: SqlFold) -> None:
    reads = JSON_KEY.findall(fold.template)
    assert reads, "a fold that reads no key would pass this test unchecked"
    undeclared = sorted({value for value, _ in reads} - set(fold.reads))
    assert not undeclared, f"{fold.name} reads keys of {undeclared}, which its `reads` omits"
    missing = sorted(
        f"{value}->>'{key}': not in {kind.TYPE} version {kind.SCHEMA_VERSION}"
        f" (keys: {', '.join(sorted(encoded_keys(kind)))})"
        for value, key in set(reads)
        for kind in fold.reads[value]
        if key not in encoded_keys(kind)
    )
    assert not missing, f"{fold.name} reads keys its events do not have:\n" + "\n".join(missing)


@pytest.mark.parametrize("fold", FOLDS, ids=lambda f: f.name)
def test_every_value_a_fold_declares_is_read(fold: SqlFold) -> None:
    assert set(fold.reads) == {value for value, _ in JSON_KEY.findall(fold.template)}


@pytest.mark.parametrize("fold", FOLDS, ids=lambda f: f.name)
def test_folds_read_the_log_only_through_current_events(fold: SqlFold) -> None:
    assert re.search(r"\b(FROM|JOIN)\s+\{events\}", fold.template)
    assert not re.search(r"\b(FROM|JOIN)\s+events\b", fold.template, re.IGNORECASE)


@pytest.mark.parametrize("fold", FOLDS, ids=lambda f: f.name)
def test_folds_take_event_type_names_from_the_event_classes(fold: SqlFold) -> None:
    assert not [name for name in EVENT_TYPES if f"'{name}'" in fold.template]
    assert set(fold.types.values()) <= set(EVENT_TYPES.values())


@pytest.mark.parametrize("fold", FOLDS, ids=lambda f: f.name)
def test_a_fold_writes_to_the_tables_it_is_given_and_reads_current_events(
    fold: SqlFold,
) -> None:
    shadows = {table: f"{table}__shadow" for table in fold.tables}
    rebuilt = fold.statement(shadows).as_string(None)
    live = fold.statement({table: table for table in fold.tables}).as_string(None)
    for table, shadow in shadows.items():
        assert f'"{shadow}"' in rebuilt
        assert f'"{table}"' in live
        assert f'"{table}"' not in rebuilt
    assert '"current_events"' in rebuilt
    assert all(f"'{kind.TYPE}'" in rebuilt for kind in fold.types.values())
