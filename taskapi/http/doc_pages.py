"""The documentation pages (`/docs`, Swagger UI; `/redocs`, ReDoc) and `/favicon.ico`: standards-
mode HTML (quart-schema's own pages have no `<!doctype html>`: tests/test_library_defects.py) that
loads only the pinned copies shipped in taskapi/static, so both work offline and under the nginx
site's Content-Security-Policy."""

from __future__ import annotations

import html
from pathlib import Path

from quart import Quart, Response, url_for
from quart_schema import hide

PAGES = Path(__file__).resolve().parent.parent / "static" / "pages"
# read once when the module is imported, never on the event loop
FAVICON = (PAGES / "favicon.ico").read_bytes()

_HEAD = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title}</title>
  <link rel="icon" href="{favicon}">
"""

SWAGGER_PAGE = (
    _HEAD
    + """  <link rel="stylesheet" href="{css}">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="{openapi}"></div>
  <script src="{js}"></script>
  <script src="{init}"></script>
</body>
</html>
"""
)

REDOC_PAGE = (
    _HEAD
    + """  <style>body {{ margin: 0; padding: 0; }}</style>
</head>
<body>
  <redoc spec-url="{openapi}"></redoc>
  <script src="{js}"></script>
  <noscript>This page requires JavaScript.</noscript>
</body>
</html>
"""
)


def _page(template: str, **values: str) -> Response:
    text = template.format(**{name: html.escape(value) for name, value in values.items()})
    return Response(text, content_type="text/html; charset=utf-8")


def init_doc_pages(
    app: Quart, *, title: str, swagger_js: str, swagger_css: str, redoc_js: str
) -> None:
    """Serve `/docs`, `/redocs` and `/favicon.ico` on `app` (endpoints `swagger_ui`,
    `redoc_ui`, `favicon`), none of them in the OpenAPI document."""

    @hide
    async def swagger_ui() -> Response:
        return _page(
            SWAGGER_PAGE,
            title=title,
            favicon=url_for("favicon"),
            css=swagger_css,
            js=swagger_js,
            init=url_for("static", filename="pages/swagger-init.js"),
            openapi=url_for("openapi"),
        )

    @hide
    async def redoc_ui() -> Response:
        return _page(
            REDOC_PAGE,
            title=title,
            favicon=url_for("favicon"),
            js=redoc_js,
            openapi=url_for("openapi"),
        )

    @hide
    async def favicon() -> Response:
        return Response(
            FAVICON,
            content_type="image/x-icon",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    app.add_url_rule("/docs", "swagger_ui", swagger_ui, methods=["GET"])
    app.add_url_rule("/redocs", "redoc_ui", redoc_ui, methods=["GET"])
    app.add_url_rule("/favicon.ico", "favicon", favicon, methods=["GET"])
