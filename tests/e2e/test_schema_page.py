"""The interactive OpenAPI page loads nothing from elsewhere: every file it names
is the service's own, and the service serves it."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlsplit

import httpx
import pytest


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def linked(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    return parser.urls


EXPECTED_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


@pytest.mark.parametrize("page", ["/schema", "/schema/swagger"])
async def test_the_page_names_only_same_origin_files_and_they_are_served(
    client: httpx.AsyncClient, page: str
) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    urls = linked(response.text)
    assert len(urls) == 4  # the style sheet, the icon and two scripts
    for url in urls:
        parts = urlsplit(url)
        # A path of this origin: no scheme, no host (`//cdn…` would be another origin).
        assert (parts.scheme, parts.netloc) == ("", ""), url
        assert url.startswith("/schema/assets/"), url
        served = await client.get(url)
        assert served.status_code == 200, url
        suffix = url[url.rindex(".") :]
        assert served.headers["content-type"].split(";")[0] == EXPECTED_TYPES[suffix]
        assert len(served.content) > 1000
    # The page's script is Swagger UI's own bundle, a release that renders OpenAPI 3.1.
    bundle = await client.get("/schema/assets/swagger-ui-bundle.js")
    assert b"SwaggerUIBundle" in bundle.content
    assert (await client.get("/schema/openapi.json")).json()["openapi"].startswith("3.1")


async def test_files_outside_the_assets_are_not_served(client: httpx.AsyncClient) -> None:
    for path in ("/schema/assets/../../__init__.py", "/schema/assets/%2e%2e/core.py"):
        assert (await client.get(path)).status_code == 404
