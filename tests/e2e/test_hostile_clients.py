"""Clients that misbehave get a clean 4xx, never a 5xx, a hang or a lost message."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from tests.support.images import png
from tests.support.phones import random_phone

# The server's header timeout (SMSQ_HEADER_TIMEOUT), short of its 10 s default
# so that the test waiting it out takes little time.
HEADER_TIMEOUT = 2


@pytest.fixture(scope="module")
def served_settings() -> dict[str, str]:
    return {"SMSQ_HEADER_TIMEOUT": str(HEADER_TIMEOUT)}


def exchange(url: str, request: bytes, wait: float = 20) -> tuple[int, float]:
    """Send raw bytes; return the status code of the answer and how long it took."""
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=wait) as sock:
        sock.sendall(request)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 "), answer[:100]
    return int(answer.split()[1]), time.monotonic() - started


def post(body: bytes, headers: bytes = b"") -> bytes:
    return (
        b"POST /messages HTTP/1.1\r\nHost: smsq\r\nContent-Type: application/json\r\n"
        + headers
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


def test_a_body_that_never_finishes_is_cut_off_with_408(served: str) -> None:
    head = b"POST /messages HTTP/1.1\r\nHost: smsq\r\nContent-Type: application/json\r\n"
    status, took = exchange(served, head + b'Content-Length: 200\r\n\r\n{"from": ')
    assert status == 408
    assert took < 5


def test_headers_that_never_finish_are_cut_off(served: str) -> None:
    """Slowloris: a connection that sends a few header lines and then nothing is
    closed by the server at its header timeout, not held forever."""
    host, port = served.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: smsq\r\nX-Slow: 1\r\n")
        started = time.monotonic()
        assert sock.recv(4096) == b""  # closed, with nothing sent
        assert HEADER_TIMEOUT - 1 < time.monotonic() - started < HEADER_TIMEOUT + 5


@pytest.mark.parametrize(
    "body",
    [b"[" * 5000 + b"]" * 5000, b'{"a":' * 2500 + b"1" + b"}" * 2500],
    ids=["deep array", "deep object"],
)
def test_deeply_nested_json_is_422(served: str, body: bytes) -> None:
    assert exchange(served, post(body))[0] == 422


def test_a_huge_body_is_413(served: str) -> None:
    assert exchange(served, post(b" " * 2_000_000))[0] == 413


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.1\r\nHost: smsq\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: smsq\r\n"
        + b"".join(b"X-%d: a\r\n" % i for i in range(20_000))
        + b"\r\n",
    ],
    ids=["one huge header", "twenty thousand headers"],
)
def test_huge_headers_are_refused(served: str, request_bytes: bytes) -> None:
    assert exchange(served, request_bytes)[0] == 431


def test_ten_thousand_query_parameters_are_refused(served: str) -> None:
    query = "&".join(f"p{i}=1" for i in range(10_000))
    status, _ = exchange(served, f"GET /messages?{query} HTTP/1.1\r\nHost: smsq\r\n\r\n".encode())
    assert 400 <= status < 500


def test_an_idempotency_key_cannot_be_reused_for_another_message(served: str) -> None:
    key = f"abuse-{random_phone()}"
    sent = {"from": random_phone(), "to": "+447911123456", "message": "first"}
    with httpx.Client(base_url=served) as client:
        first = client.post("/messages", json=sent, headers={"Idempotency-Key": key})
        assert first.status_code == 201
        for i in range(5):
            other = {**sent, "message": f"attempt {i}"}
            reuse = client.post("/messages", json=other, headers={"Idempotency-Key": key})
            assert reuse.status_code == 422
            assert reuse.headers["content-type"] == "application/problem+json"
        replay = client.post(
            "/messages",
            content=json.dumps(sent),
            headers={"Idempotency-Key": key, "Content-Type": "application/json"},
        )
        assert replay.json()["id"] == first.json()["id"]


def upload_head(served: str, length: int) -> bytes:
    sent = {"from": random_phone(), "to": "+447911123456", "message": "with a picture"}
    message_id = httpx.post(f"{served}/messages", json=sent).json()["id"]
    return (
        f"POST /messages/{message_id}/media HTTP/1.1\r\nHost: smsq\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def test_an_upload_that_never_finishes_is_cut_off_with_408(served: str) -> None:
    part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n\x89PNG'
    status, took = exchange(served, upload_head(served, 100_000) + part)
    assert status == 408
    assert took < 5


def test_an_upload_declaring_a_huge_body_is_413_at_once(served: str) -> None:
    assert exchange(served, upload_head(served, 10**10))[0] == 413


def test_an_oversize_upload_gets_its_413_over_a_real_connection(served: str) -> None:
    # The server stops reading at the first byte past the limit; the client,
    # still sending, must still receive the answer.
    sent = {"from": random_phone(), "to": "+447911123456", "message": "too big"}
    with httpx.Client(base_url=served, timeout=30) as client:
        message_id = client.post("/messages", json=sent).json()["id"]
        huge = png(size=(1400, 1400)) * 3
        response = client.post(
            f"/messages/{message_id}/media", files=[("file", ("huge.png", huge, "image/png"))]
        )
        assert response.status_code == 413
        assert "huge.png" in response.json()["detail"]
        small = client.post(
            f"/messages/{message_id}/media", files=[("file", ("ok.png", png(), "image/png"))]
        )
        assert small.status_code == 201


def raw_get(served: str, target: str) -> bytes:
    """The whole answer to a GET of `target` exactly as written, unnormalised by any client."""
    host, port = served.removeprefix("http://").split(":")
    request = f"GET {target} HTTP/1.1\r\nHost: smsq\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    "target",
    [
        "/media/../../../../etc/passwd",
        "/media/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/media/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/media/%252e%252e%252fetc%252fpasswd",
        "/media/..\\..\\..\\etc\\passwd",
        "/media//etc/passwd",
        "/media/%2Fetc%2Fpasswd",
        f"/media/{'0' * 64}%00.png",
        f"/media/{'0' * 64}/../../../../etc/passwd",
        "/media/" + "..%2f" * 200 + "etc%2fpasswd",
        "/messages/..%2f..%2fetc%2fpasswd/media",
    ],
)
def test_path_tricks_in_media_urls_get_a_clean_4xx_and_no_file(served: str, target: str) -> None:
    answer = raw_get(served, target)
    status = int(answer.split()[1])
    assert 400 <= status < 500, answer[:300]
    assert b"root:" not in answer


def test_stored_media_answer_only_at_their_exact_hash(served: str) -> None:
    sent = {"from": random_phone(), "to": "+447911123456", "message": "a picture"}
    with httpx.Client(base_url=served) as client:
        message_id = client.post("/messages", json=sent).json()["id"]
        attached = client.post(
            f"/messages/{message_id}/media", files=[("file", ("a.png", png(), "image/png"))]
        )
        digest = attached.json()["items"][0]["sha256"]
    assert raw_get(served, f"/media/{digest}").startswith(b"HTTP/1.1 200")
    for target in (
        f"/media/{digest.upper()}",
        f"/media/{digest}.png",
        f"/media/{digest[:2]}/{digest[2:4]}/{digest}",
        f"/media/{digest}%2f..%2f{digest}",
    ):
        status = int(raw_get(served, target).split()[1])
        assert 400 <= status < 500, target
