"""Reading `file` parts from a multipart body, however it is cut into chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.http.problems import Refusal
from api.http.uploads import MAX_FILES, Upload, parse_form

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


async def parse(body: bytes, cuts: Sequence[int] = (), max_bytes: int = 1000) -> list[Upload]:
    return await parse_form(chunks(body, cuts), BOUNDARY, max_bytes)


@given(
    st.lists(st.binary(max_size=300), min_size=1, max_size=4),
    st.lists(st.integers(min_value=0), max_size=12),
)
async def test_files_are_read_whole_wherever_the_chunks_are_cut(
    bodies: list[bytes], cuts: list[int]
) -> None:
    body = form([("file", f"{i}.png", b) for i, b in enumerate(bodies)], {"note": "ignored"})
    uploads = await parse(body, cuts)
    assert [(u.number, u.filename, u.data) for u in uploads] == [
        (i + 1, f"{i}.png", b) for i, b in enumerate(bodies)
    ]


async def test_other_parts_are_read_past() -> None:
    body = form([("picture", "a.png", b"a"), ("file", None, b"b")], {"file_name": "x"})
    assert [(u.number, u.filename, u.data) for u in await parse(body)] == [(1, None, b"b")]


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
    assert Upload(3, None, b"").label == "file 3"
    assert Upload(1, "../../etc/passwd", b"").label == 'file 1 ("../../etc/passwd")'
    assert Upload(2, "a" * 500, b"").label == f'file 2 ("{"a" * 100}")'
