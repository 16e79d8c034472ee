"""Reading `file` parts from a multipart body, however it is cut into chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.http.problems import Refusal
from api.http.uploads import MAX_FILES, PIECE, Spool, label, parse_form

BOUNDARY = "x-smsq-test"


def form(files: list[tuple[str, str | None, bytes]], data: dict[str, str] | None = None) -> bytes:
    request = httpx.Request(
        "POST",
        "http://smsq.test/",
        files=[(name, (filename, body, "image/png")) for name, filename, body in files],
        data=data,
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    return request.read()


async def chunks(body: bytes, cuts: Sequence[int]) -> AsyncIterator[bytes]:
    start = 0
    for cut in sorted({c % (len(body) + 1) for c in cuts}):
        if cut > start:
            yield body[start:cut]
            start = cut
    yield body[start:]
    yield b""  # the end, as Litestar's request stream signals it


async def parse(
    body: bytes, cuts: Sequence[int] = (), max_bytes: int = 1000
) -> list[tuple[int, str | None, bytes]]:
    """Each file's number, name and bytes, as its spool file holds them."""
    with Spool(None) as spool:
        uploads = await parse_form(chunks(body, cuts), BOUNDARY, spool, max_bytes)
        return [(u.number, u.filename, u.read()) for u in uploads]


@given(
    st.lists(st.binary(max_size=300), min_size=1, max_size=4),
    st.lists(st.integers(min_value=0), max_size=12),
)
async def test_files_are_read_whole_wherever_the_chunks_are_cut(
    bodies: list[bytes], cuts: list[int]
) -> None:
    body = form([("file", f"{i}.png", b) for i, b in enumerate(bodies)], {"note": "ignored"})
    assert await parse(body, cuts) == [(i + 1, f"{i}.png", b) for i, b in enumerate(bodies)]


async def test_a_file_larger_than_a_piece_is_spooled_whole() -> None:
    data = bytes(range(256)) * (3 * PIECE // 256 + 7)
    body = form([("file", "big.png", data)])
    assert await parse(body, range(1000, len(body), 65536), max_bytes=len(data)) == [
        (1, "big.png", data)
    ]


async def test_other_parts_are_read_past() -> None:
    body = form([("picture", "a.png", b"a"), ("file", None, b"b")], {"file_name": "x"})
    assert await parse(body) == [(1, None, b"b")]


async def test_a_file_over_the_limit_is_413_naming_it() -> None:
    body = form([("file", "ok.png", b"x" * 1000), ("file", 'we"ird\n.png', b"x" * 1001)])
    with pytest.raises(Refusal) as refused:
        await parse(body, [100, 900, 1500])
    assert refused.value.status == 413
    assert refused.value.detail == 'file 2 ("we\\"ird\\n.png") is larger than 1,000 bytes'


async def test_too_many_files_is_413() -> None:
    body = form([("file", f"{i}.png", b"x") for i in range(MAX_FILES + 1)])
    with pytest.raises(Refusal) as refused:
        await parse(body)
    assert (refused.value.status, refused.value.detail) == (413, "at most 10 files per request")


@pytest.mark.parametrize(
    "body",
    [b"", b"--x-smsq-test\r\nContent-Disposition: form-data; name=file\r\n\r\nno end"],
    ids=["empty", "unfinished"],
)
async def test_a_broken_body_is_422(body: bytes) -> None:
    with pytest.raises(Refusal) as refused:
        await parse(body)
    assert refused.value.status == 422


def test_a_file_is_named_by_its_place_and_its_name_shown_safely() -> None:
    assert label(3, None) == "file 3"
    assert label(1, "../../etc/passwd") == 'file 1 ("../../etc/passwd")'
    assert label(2, "a" * 500) == f'file 2 ("{"a" * 100}")'
