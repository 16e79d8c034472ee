"""The interactive OpenAPI page under /schema, whole without the internet.

Litestar's render plugins load their scripts from a CDN by default: on a
machine without internet the page is blank, and a CDN's script runs with the
page's origin. Swagger UI's files come instead from a PyPI package
(`swagger-ui-py`, which ships the `swagger-ui-dist` build) and are served by
the service itself, beside the page and under the same scope.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from litestar import Router
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.static_files import create_static_files_router

PATH = "/schema"
ASSETS = "/assets"


def _assets_dir() -> Path:
    # Found, not imported: the package's own module pulls in a web framework's glue.
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or spec.origin is None:
        raise RuntimeError("swagger-ui-py, which holds the /schema page's files, is not installed")
    return Path(spec.origin).parent / "static"


def schema_page() -> SwaggerRenderPlugin:
    """Swagger UI, its script, style sheet and icon named by same-origin paths."""
    base = f"{PATH}{ASSETS}"
    return SwaggerRenderPlugin(
        js_url=f"{base}/swagger-ui-bundle.js",
        css_url=f"{base}/swagger-ui.css",
        standalone_preset_js_url=f"{base}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{base}/favicon-32x32.png'>",
        path="/swagger",
    )


def schema_router() -> Router:
    """The router the OpenAPI document and its page are served from, with the page's files."""
    assets = create_static_files_router(ASSETS, directories=[_assets_dir()], name="schema-assets")
    # The document describes every route: readable by any key that may read.
    # Kept out of the document it serves: it is not part of the API a client calls.
    return Router(PATH, opt={"scope": "read"}, route_handlers=[assets], include_in_schema=False)
