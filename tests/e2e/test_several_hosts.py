"""Two hosts: `smsq serve` on 127.0.0.2 and on 127.0.0.3, each with a data
directory of its own, sharing one database and one bucket.

Nothing ties a message or an image to the host that took it: each is read,
listed, processed and served through the other; the rate limit and dedup
hold for requests split over both; and when one host is killed outright, the
other keeps serving and its projectors fold what the dead one accepted.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support import images
from tests.support.media import MediaPlace, eventually, key, part, upload
from tests.support.objects import ObjectStorage
from tests.support.phones import random_phone
from tests.support.servers import Server, crash, server

RECIPIENT = "+447911123456"
HOSTS = ("127.0.0.2", "127.0.0.3")


@dataclass(frozen=True)
class Hosts:
    servers: list[Server]
    data_dirs: list[Path]
    media: MediaPlace

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]


@contextmanager
def two_hosts(database_url: str, bucket: str, workdir: Path) -> Iterator[Hosts]:
    data_dirs = [workdir / f"data-{host}" for host in HOSTS]
    with ExitStack() as stack:
        servers = [
            stack.enter_context(
                server(
                    {
                        "SMSQ_DATABASE_URL": database_url,
                        "SMSQ_DATA_DIR": str(data_dir),
                        "SMSQ_MEDIA_URL": bucket,
                        "SMSQ_LOG_LEVEL": "WARNING",
                    },
                    workdir / f"{host}.log",
                    host=host,
                )
            )
            for host, data_dir in zip(HOSTS, data_dirs, strict=True)
        ]
        yield Hosts(servers, data_dirs, MediaPlace(workdir / "unused", bucket))


@pytest.fixture(scope="module")
def hosts(
    database_url: str, s3: ObjectStorage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hosts]:
    with two_hosts(database_url, s3.fresh_url(), tmp_path_factory.mktemp("hosts")) as pair:
        yield pair


@pytest.fixture
def doomed_hosts(database_url: str, s3: ObjectStorage, tmp_path: Path) -> Iterator[Hosts]:
    """A pair of its own, for the test that kills one."""
    with two_hosts(database_url, s3.fresh_url(), tmp_path) as pair:
        yield pair


async def post(client: httpx.AsyncClient, sender: str, text: str) -> httpx.Response:
    return await client.post("/messages", json={"from": sender, "to": RECIPIENT, "message": text})


async def processed(client: httpx.AsyncClient, message_id: str) -> bool:
    response = await client.get(f"/messages/{message_id}")
    return bool(response.status_code == 200 and response.json()["status"] == "processed")


async def test_what_one_host_takes_the_other_reads_lists_processes_and_serves(
    hosts: Hosts,
) -> None:
    a_url, b_url = hosts.urls
    async with (
        httpx.AsyncClient(base_url=a_url, timeout=30) as a,
        httpx.AsyncClient(base_url=b_url, timeout=30) as b,
    ):
        sender = random_phone()
        created = await post(a, sender, "posted through a")
        assert created.status_code == 201
        message_id = created.json()["id"]

        read = await b.get(f"/messages/{message_id}")
        assert read.status_code == 200
        assert read.json()["message"] == "posted through a"
        token = {"Consistency-Token": created.headers["consistency-token"]}
        listed = await b.get("/messages", params={"from": sender}, headers=token)
        assert [m["id"] for m in listed.json()["items"]] == [message_id]
        await eventually(lambda: processed(b, message_id))

        data = images.png(seed=60)
        attached = await upload(b, message_id, part(data))
        assert attached.status_code == 201
        (item,) = attached.json()["items"]
        assert (await a.get(f"/messages/{message_id}/media")).json()["items"] == [item]
        assert (await a.get(f"/messages/{message_id}")).json()["media_count"] == 1
        for client in (a, b):
            served = await client.get(item["url"])
            assert served.status_code == 200
            assert served.content == data
            assert served.headers["etag"] == f'"{item["sha256"]}"'

    # The bytes are in the bucket, once, and in neither host's directory.
    assert await hosts.media.names() == [key(hashlib.sha256(data).hexdigest())]
    files = [p for d in hosts.data_dirs for p in d.rglob("*") if p.is_file()]
    assert [p for p in files if p.name != "seal-key.pem"] == []


async def burst(urls: list[str], bodies: list[dict[str, str]]) -> list[httpx.Response]:
    """Every body at once, dealt out over the hosts in turn."""
    async with (
        httpx.AsyncClient(base_url=urls[0], timeout=30) as a,
        httpx.AsyncClient(base_url=urls[1], timeout=30) as b,
    ):
        clients = [a, b]
        return await asyncio.gather(
            *(clients[i % 2].post("/messages", json=body) for i, body in enumerate(bodies))
        )


async def test_twenty_identical_posts_over_both_hosts_store_one(hosts: Hosts) -> None:
    body = {"from": random_phone(), "to": RECIPIENT, "message": "same"}
    responses = await burst(hosts.urls, [body] * 20)
    assert Counter(r.status_code for r in responses) == {201: 1, 200: 19}
    assert len({r.json()["id"] for r in responses}) == 1


async def test_twenty_different_posts_over_both_hosts_store_five(hosts: Hosts) -> None:
    sender = random_phone()
    bodies = [{"from": sender, "to": RECIPIENT, "message": f"n{i}"} for i in range(20)]
    responses = await burst(hosts.urls, bodies)
    assert Counter(r.status_code for r in responses) == {201: 5, 429: 15}
    # Both hosts took part in the race, and both answered 201s and 429s.
    by_host = Counter((str(r.url.host), r.status_code) for r in responses)
    assert {host for host, _ in by_host} == set(HOSTS)
    stored = {r.json()["id"] for r in responses if r.status_code == 201}
    async with httpx.AsyncClient(base_url=hosts.urls[1]) as b:

        async def listed() -> bool:
            page = await b.get("/messages", params={"from": sender, "limit": 100})
            return {m["id"] for m in page.json()["items"]} == stored

        await eventually(listed)


async def test_a_host_killed_leaves_the_other_serving_and_folding(doomed_hosts: Hosts) -> None:
    hosts = doomed_hosts
    a_url, b_url = hosts.urls
    sender = random_phone()
    async with (
        httpx.AsyncClient(base_url=a_url, timeout=30) as a,
        httpx.AsyncClient(base_url=b_url, timeout=30) as b,
    ):
        # Accepted by a just before it dies: its projectors may not have folded it.
        accepted = [await post(a, sender, f"before {i}") for i in range(3)]
        assert [r.status_code for r in accepted] == [201] * 3
        data = images.jpeg(seed=61)
        assert (await upload(a, accepted[0].json()["id"], part(data))).status_code == 201

        crash(hosts.servers[0].proc)  # SIGKILL of its whole process group
        with pytest.raises(httpx.TransportError):
            await a.get("/healthz")

        after = await post(b, sender, "after the kill")
        assert after.status_code == 201
        ids = [r.json()["id"] for r in [*accepted, after]]

        async def all_processed() -> bool:
            return all([await processed(b, m) for m in ids])

        await eventually(all_processed, within=20)
        # The token names where `after` was received: the list then holds it,
        # whatever its status there (the read model may not have folded its
        # SmsProcessed yet, which the single reads above fold from the log).
        listed = await b.get(
            "/messages",
            params={"from": sender},
            headers={"Consistency-Token": after.headers["consistency-token"]},
        )
        assert {m["id"] for m in listed.json()["items"]} == set(ids)

        async def listed_as_processed() -> bool:
            page = await b.get("/messages", params={"from": sender, "status": "processed"})
            return {m["id"] for m in page.json()["items"]} == set(ids)

        # And the survivor's projector folds them all to processed.
        await eventually(listed_as_processed, within=20)
        first = (await b.get(f"/messages/{ids[0]}")).json()
        assert first["media_count"] == 1
        (item,) = (await b.get(f"/messages/{ids[0]}/media")).json()["items"]
        assert (await b.get(item["url"])).content == data
