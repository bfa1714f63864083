"""The OpenAPI 3.1 document of the portal, built from the app's router, so no route goes undescribed.

JSON API routes take their summary, body and answers from `portal.web.api.ENDPOINTS` (schema components are
the API's pydantic models); every other route (sign-in, pages, staff console, downloads) is described from
its handler's docstring as an HTML page or form. Served at GET /api/openapi.json (public).
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from portal.web import api, auth

REF = "#/components/schemas/{model}"
_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


def route_path(resource: web.AbstractResource) -> str:
    """A resource's path in OpenAPI form (`{name}` parameters, regexes dropped; static: `{filename}`)."""
    if isinstance(resource, web.StaticResource):
        return resource.canonical.rstrip("/") + "/{filename}"
    return _PARAM.sub(lambda m: "{" + m.group(1) + "}", resource.canonical)


def app_routes(app: web.Application) -> list[tuple[str, str, web.AbstractRoute]]:
    """(method, OpenAPI path, route) of every route a client can call (HEAD, added beside GET, left out)."""
    out = []
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        method = "GET" if route.method == "*" else route.method
        out.append((method, route_path(route.resource), route))
    return out


def _models() -> list[type[BaseModel]]:
    seen: dict[str, type[BaseModel]] = {}
    for endpoint in api.ENDPOINTS.values():
        for _, model in endpoint.responses.values():
            if model is not None:
                seen[model.__name__] = model
        if endpoint.body is not None:
            seen[endpoint.body.__name__] = endpoint.body
    return list(seen.values())


def _components() -> dict[str, Any]:
    models = _models()
    _, schema = models_json_schema(
        [(m, "validation") for m in models if m in _bodies()]
        + [(m, "serialization") for m in models if m not in _bodies()],
        ref_template=REF,
    )
    schemas: dict[str, Any] = schema.get("$defs", {})
    return {
        "schemas": schemas,
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "description": "An API token (fwt_...)."},
            "cookieAuth": {
                "type": "apiKey",
                "in": "cookie",
                "name": auth.COOKIE,
                "description": f"A signed-in session; POSTs then need the {auth.CSRF_HEADER} header "
                "(JSON) or the csrf_token form field (pages).",
            },
        },
    }


def _bodies() -> set[type[BaseModel]]:
    return {e.body for e in api.ENDPOINTS.values() if e.body is not None}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _parameters(path: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAM.findall(path)
    ]


def _operation_id(method: str, path: str) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_") or "root"
    return f"{method.lower()}_{words}"


def _api_operation(method: str, path: str, endpoint: api.Endpoint) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, (description, model) in sorted(endpoint.responses.items()):
        answer: dict[str, Any] = {"description": description}
        answer["content"] = {"application/json": {"schema": _ref(model) if model else {"type": "object"}}}
        responses[str(status)] = answer
    operation: dict[str, Any] = {
        "operationId": _operation_id(method, path),
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "responses": responses,
    }
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(endpoint.body)}},
        }
    return operation


def _page_operation(method: str, path: str, handler: Any) -> dict[str, Any]:
    doc = (getattr(handler, "__doc__", None) or "").strip().splitlines()
    summary = doc[0] if doc else f"{method} {path}"
    tag = path.strip("/").split("/")[0] or "pages"
    responses: dict[str, Any] = {}
    if path.startswith("/api/"):
        responses["200"] = {"description": "JSON (or a file)", "content": {"application/json": {}}}
        responses["401"] = {"description": "Not signed in, or an unknown API token"}
    elif method == "GET":
        responses["200"] = {"description": "An HTML page (or a file)", "content": {"text/html": {}}}
    else:
        responses["302"] = {"description": "Done; redirects to the next page"}
        responses["403"] = {"description": "Missing or wrong CSRF token"}
    operation: dict[str, Any] = {
        "operationId": _operation_id(method, path),
        "summary": summary,
        "tags": [tag],
        "responses": responses,
    }
    if not auth.is_public(handler) and not path.startswith("/api/"):
        responses.setdefault("302", {"description": "Not signed in: redirects to /login"})
    if method == "POST":
        operation["requestBody"] = {
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {"csrf_token": {"type": "string"}},
                        "required": ["csrf_token"],
                    }
                }
            }
        }
    return operation


def build(app: web.Application) -> dict[str, Any]:
    """The OpenAPI document of every route of `app`."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path, route in app_routes(app):
        endpoint = api.ENDPOINTS.get((method, path))
        if endpoint is not None:
            operation = _api_operation(method, path, endpoint)
        else:
            operation = _page_operation(method, path, route.handler)
        parameters = _parameters(path)
        if parameters:
            operation["parameters"] = parameters
        if auth.is_public(route.handler):
            operation["security"] = []
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "fleetwatch partner portal",
            "version": "1",
            "description": "Cases of a partner's customers: list, read, enter, add messages. Partners see "
            "only their own cases; someone else's case answers 404.",
        },
        "security": [{"bearerAuth": []}, {"cookieAuth": []}],
        "paths": dict(sorted(paths.items())),
        "components": _components(),
    }


async def document(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of the portal."""
    return web.json_response(build(request.app))
