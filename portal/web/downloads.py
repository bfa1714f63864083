"""Software downloads: the release catalog for signed-in partners and staff, and the files themselves.

Pages: `/downloads` (every product with its current version and notes), `/downloads/{product}` (all its
releases). Files: `/downloads/{product}/{version}/{file}` (the same under `/api/downloads/` for API
tokens), streamed in chunks with Content-Type, Content-Length, `Content-Disposition: attachment`, a strong
ETag (the SHA-256), `Accept-Ranges: bytes` and single-range support (206; 416 with
`Content-Range: bytes */size` when the range lies outside the file). Only files the catalog names,
verified at load time and unchanged since, are served; nothing in the URL becomes a path, so traversal
finds nothing (404). Each completed download (every byte asked for was written) becomes a
`PortalAuditEvent` (action `download`). JSON: `/api/downloads`, `/api/downloads/{product}`.

The catalog (`portal.releases`) is loaded once at start-up, in a thread (files are hashed); a catalog that
cannot be loaded leaves downloads empty with the error logged and shown to staff, and the portal running.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from markdown_it import MarkdownIt

from fleetcore.errors import ConfigError
from portal.directory import User, UserRole
from portal.releases import Catalog, Product, Release, load_catalog, unchanged
from portal.web import auth
from portal.web.keys import KEYS
from schemas.portal import PortalAction, PortalAuditEvent

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
_MD = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_COMPRESSED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}


@dataclass
class CatalogState:
    """The loaded catalog and, if loading failed, why (filled by the start-up hook)."""

    catalog: Catalog = field(default_factory=Catalog)
    error: str | None = None


CATALOG: web.AppKey[CatalogState] = web.AppKey("fw_releases", CatalogState)


class RangeNotSatisfiable(ValueError):
    """The Range header asks for bytes outside the file (answer 416)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (first, last) byte, inclusive, of a single `bytes=` range; None to send the whole file (no header,
    another unit, several ranges, or a malformed one: a server may ignore those). `RangeNotSatisfiable` when
    the range starts past the end (or asks for the last 0 bytes)."""
    if not header:
        return None
    match = _RANGE.match(header)
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        return None
    if not first_text:
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - suffix), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last_text and last < first:
        return None
    if first >= size:
        raise RangeNotSatisfiable(header)
    return first, min(last, size - 1)


def content_type(release: Release) -> str:
    """The catalog's content type, else one from the file name (a .tar.gz is application/gzip, never a
    Content-Encoding, so browsers save the bytes as they are)."""
    if release.content_type:
        return release.content_type
    guessed, encoding = mimetypes.guess_type(release.file, strict=False)
    if encoding is not None:
        return _COMPRESSED.get(encoding, "application/octet-stream")
    return guessed or "application/octet-stream"


def render_notes(text: str) -> str:
    """Release notes (Markdown) as safe HTML: raw HTML escaped, dangerous link schemes dropped."""
    html: str = _MD.render(text)
    return html


# -- views of the catalog -------------------------------------------------------------------------------


def _file_url(release: Release, api: bool) -> str:
    prefix = "/api/downloads" if api else "/downloads"
    return f"{prefix}/{release.product}/{release.version}/{release.file}"


def product_json(product: Product, user: User, api: bool = True) -> dict[str, Any]:
    """A product with every version and file, JSON-ready; why a file is unavailable only for staff."""
    staff = user.role is UserRole.STAFF
    versions = []
    for version, files in product.versions():
        first = files[0]
        versions.append(
            {
                "version": version,
                "date": first.date.isoformat(),
                "notes": first.notes,
                "current": version == product.current,
                "files": [
                    {
                        "file": r.file,
                        "sha256": r.sha256,
                        "size": r.size,
                        "content_type": content_type(r),
                        "available": r.available,
                        **({"problem": r.problem} if staff and r.problem else {}),
                        **({"url": _file_url(r, api)} if r.available else {}),
                    }
                    for r in files
                ],
            }
        )
    return {
        "product": product.product,
        "name": product.name,
        "description": product.description,
        "current": product.current,
        "versions": versions,
    }


# -- handlers -------------------------------------------------------------------------------------------


def _state(request: web.Request) -> CatalogState:
    return request.app[CATALOG]


def _not_found(request: web.Request, what: str) -> web.HTTPException:
    if auth.is_api(request):
        return auth.json_error(web.HTTPNotFound, what)
    return web.HTTPNotFound(text=what)


async def downloads_page(request: web.Request) -> web.Response:
    """GET /downloads: every product with its current version."""
    user = await auth.require_user(request)
    state = _state(request)
    products = [product_json(p, user, api=False) for p in state.catalog.products.values()]
    return await auth.render(
        request,
        "downloads.html",
        products=products,
        error=state.error if user.role is UserRole.STAFF else None,
        unavailable=state.error is not None,
        render_notes=render_notes,
    )


async def product_page(request: web.Request) -> web.Response:
    """GET /downloads/{product}: every release of one product."""
    user = await auth.require_user(request)
    product = _state(request).catalog.product(request.match_info["product"])
    if product is None:
        raise _not_found(request, "no such product")
    return await auth.render(
        request,
        "downloads_product.html",
        product=product_json(product, user, api=False),
        render_notes=render_notes,
    )


async def api_catalog(request: web.Request) -> web.Response:
    """GET /api/downloads: the catalog as JSON."""
    user = await auth.require_user(request)
    state = _state(request)
    body: dict[str, Any] = {
        "products": [product_json(p, user) for p in state.catalog.products.values()],
    }
    if state.error is not None:
        body["error"] = state.error if user.role is UserRole.STAFF else "the software catalog is unavailable"
    return web.json_response(body)


async def api_product(request: web.Request) -> web.Response:
    """GET /api/downloads/{product}: one product as JSON."""
    user = await auth.require_user(request)
    product = _state(request).catalog.product(request.match_info["product"])
    if product is None:
        raise _not_found(request, "no such product")
    return web.json_response(product_json(product, user))


async def download(request: web.Request) -> web.StreamResponse:
    """GET (HEAD) a release file: whole or one range, audited when every byte asked for was sent."""
    user = await auth.require_user(request)
    info = request.match_info
    release = _state(request).catalog.find(info["product"], info["version"], info["file"])
    if release is None or not release.available:
        raise _not_found(request, "no such file")
    if not unchanged(release):
        log.error("release file %s changed since it was verified: not served", release.path)
        raise _not_found(request, "no such file")
    etag = f'"{release.sha256}"'
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-transform",
        "X-Content-Type-Options": "nosniff",
    }
    if etag in _etags(request.headers.get("If-None-Match")):
        return web.Response(status=304, headers=headers)
    if_range = request.headers.get("If-Range")
    try:
        wanted = parse_range(request.headers.get("Range"), release.size)
    except RangeNotSatisfiable:
        if if_range is None or if_range.strip() == etag:
            raise web.HTTPRequestRangeNotSatisfiable(
                headers={**headers, "Content-Range": f"bytes */{release.size}"}
            ) from None
        wanted = None
    if if_range is not None and if_range.strip() != etag:
        wanted = None
    first, last = wanted if wanted is not None else (0, release.size - 1)
    length = last - first + 1 if release.size else 0
    response = web.StreamResponse(status=206 if wanted is not None else 200, headers=headers)
    response.content_type = content_type(release)
    response.content_length = length
    response.headers["Content-Disposition"] = f'attachment; filename="{release.file}"'
    if wanted is not None:
        response.headers["Content-Range"] = f"bytes {first}-{last}/{release.size}"
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    sent = await _send(response, release, first, length)
    await response.write_eof()
    if sent == length:
        await _audit(request, user, release, sent, (first, last) if wanted is not None else None)
    return response


def _etags(header: str | None) -> list[str]:
    if not header:
        return []
    return [tag.strip().removeprefix("W/") for tag in header.split(",")]


async def _send(response: web.StreamResponse, release: Release, offset: int, length: int) -> int:
    """Write `length` bytes of the file from `offset`; the number written (less if the file shrank)."""
    sent = 0
    handle = await asyncio.to_thread(release.path.open, "rb")
    try:
        await asyncio.to_thread(handle.seek, offset)
        while sent < length:
            chunk = await asyncio.to_thread(handle.read, min(CHUNK, length - sent))
            if not chunk:
                log.error("release file %s ended early: %d of %d bytes sent", release.path, sent, length)
                break
            await response.write(chunk)
            sent += len(chunk)
    finally:
        await asyncio.to_thread(handle.close)
    return sent


async def _audit(
    request: web.Request, user: User, release: Release, sent: int, span: tuple[int, int] | None
) -> None:
    details: dict[str, str | int | bool | None] = {
        "product": release.product,
        "version": release.version,
        "file": release.file,
        "sha256": release.sha256,
        "bytes": sent,
        "partial": span is not None,
    }
    if span is not None:
        details["range"] = f"{span[0]}-{span[1]}/{release.size}"
    event = PortalAuditEvent(
        event_id=uuid.uuid4().hex,
        at=request.app[KEYS.clock].now(),
        action=PortalAction.DOWNLOAD,
        username=user.username,
        partner_id=user.partner_id,
        remote=(request.remote or "")[:200] or None,
        details=dict(details),
    )
    try:
        await request.app[KEYS.audit](event)
    except Exception:  # the bytes are out; a lost audit record is logged loudly, not turned into an error
        log.exception("could not audit the download of %s by %s", release.file, user.username)


# -- wiring ---------------------------------------------------------------------------------------------


async def _load(app: web.Application) -> None:
    state = app[CATALOG]
    folder = app[KEYS.settings].releases_dir
    try:
        state.catalog = await asyncio.to_thread(load_catalog, folder)
    except ConfigError as exc:
        state.error = str(exc)
        log.error("downloads unavailable: %s", exc)
        return
    for product in state.catalog.products.values():
        for release in product.releases:
            if not release.available:
                log.error("release %s %s (%s) unavailable: %s", *_names(release), release.problem)
    log.info("release catalog: %d products from %s", len(state.catalog.products), folder)


def _names(release: Release) -> tuple[str, str, str]:
    return release.product, release.version, release.file


def setup(app: web.Application) -> None:
    """Register the download pages, files and JSON; the catalog loads when the app starts."""
    app[CATALOG] = CatalogState()
    app.on_startup.append(_load)
    router = app.router
    router.add_get("/downloads", downloads_page, name="downloads")
    router.add_get("/downloads/{product}", product_page, name="downloads_product")
    router.add_get("/downloads/{product}/{version}/{file}", download, name="downloads_file")
    router.add_get("/api/downloads", api_catalog, name="api_downloads")
    router.add_get("/api/downloads/{product}", api_product, name="api_downloads_product")
    router.add_get("/api/downloads/{product}/{version}/{file}", download, name="api_downloads_file")
