"""The status routes of the router's HTTP front: ``/status.json``, and ``/status``, the page that reads it.

The page is plain HTML, CSS and JavaScript shipped in the package (``static/``): no build step, nothing
fetched from elsewhere, so it works on a host cut off from the internet.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response

from hybrid.errors import HybridError
from hybrid.router.openai.errors import error_response
from hybrid.router.status.books import STATUS_MINUTES
from hybrid.router.status.document import status_document

if TYPE_CHECKING:
    from hybrid.router.dataplane import RouterDataPlane

_STATIC = {
    "status.css": "text/css; charset=utf-8",
    "status.js": "text/javascript; charset=utf-8",
}
# The page changes with every refresh; no proxy or browser should keep a copy.
_NO_STORE = {"cache-control": "no-store"}


@cache
def static_file(name: str) -> bytes:
    return resources.files("hybrid.router.status").joinpath("static", name).read_bytes()


def add_status_routes(app: FastAPI, dataplane: RouterDataPlane, workers: int = 1) -> None:
    @app.get("/status.json")
    async def status_json(
        request: Request,
        minutes: int = Query(
            default=STATUS_MINUTES, ge=1, le=STATUS_MINUTES, description="How many of the last minutes to sum over."
        ),
    ) -> JSONResponse:
        """Every tier and replica, the mix, spillovers, success, cost; an admin key's where the router checks keys."""
        try:
            dataplane.require_admin(request.headers.get("authorization"))
        except HybridError as error:
            return error_response(error)
        return JSONResponse(status_document(dataplane, minutes, workers), headers=_NO_STORE)

    # The page and its files hold no figures (it reads them from /status.json), and are no API to document.
    @app.get("/status", include_in_schema=False)
    async def status_page() -> Response:
        return Response(static_file("status.html"), media_type="text/html; charset=utf-8", headers=_NO_STORE)

    @app.get("/status/{name}", include_in_schema=False)
    async def status_asset(name: str) -> Response:
        media_type = _STATIC.get(name)
        if media_type is None:
            raise HTTPException(
                404, f"/status/{name} is not part of the status page ({', '.join(sorted(_STATIC))} are)"
            )
        return Response(static_file(name), media_type=media_type)
