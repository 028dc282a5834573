"""The OpenAPI document describes exactly the routes of the app, and is a well-formed OpenAPI 3 document
(checked by hand: openapi-spec-validator is not among the test dependencies)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bottle
import pytest

from gateway.http.api import make_app
from gateway.http.base import ApiContext
from gateway.http.openapi import document
from gateway.store.database import TimeSeriesStore

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[bottle.Bottle]:
    store = TimeSeriesStore(tmp_path / "store")
    loop = asyncio.new_event_loop()
    try:
        yield make_app(ApiContext(store, loop))
    finally:
        loop.run_until_complete(store.close())
        loop.close()


# The web page and its files (gateway/http/page.py) are routes of the app but no part of the API.
PAGE_ROUTES = {("/", "get"), ("/favicon.ico", "get"), ("/assets/{tag}/{path}", "get")}


def routes(app: bottle.Bottle) -> set[tuple[str, str]]:
    """(OpenAPI path, method) of every API route; bottle's <name> and <name:filter> wildcards become {name}."""
    every = {(re.sub(r"<([a-z_]+)(:[a-z]+)?>", r"{\1}", route.rule), route.method.lower()) for route in app.routes}
    assert every >= PAGE_ROUTES
    return every - PAGE_ROUTES


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            assert method in METHODS, (path, method)
            yield path, method, operation


def test_every_route_is_described_and_every_description_is_a_route(app: bottle.Bottle) -> None:
    described = {(path, method) for path, method, _ in operations(document())}
    assert routes(app) == described
    assert ("/api/query", "get") in described and ("/db/watch/{table}", "get") in described


def test_the_document_is_well_formed() -> None:
    doc = document()
    json.dumps(doc)  # serializable as is
    assert re.fullmatch(r"3\.[01]\.[0-9]+", doc["openapi"])
    assert doc["info"]["title"] and doc["info"]["version"]
    schemes = doc["components"]["securitySchemes"]
    seen_ids = set()
    for path, method, operation in operations(doc):
        where = f"{method.upper()} {path}"
        assert operation["operationId"] not in seen_ids, where
        seen_ids.add(operation["operationId"])
        assert operation["summary"], where
        responses = operation["responses"]
        assert any(code.startswith("2") for code in responses), where
        for code, response in responses.items():
            assert re.fullmatch(r"[1-5][0-9][0-9]", code), where
            assert response["description"], (where, code)
            if code[0] in "45":
                assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
        parameters = operation.get("parameters", [])
        keys = [(p["name"], p["in"]) for p in parameters]
        assert len(keys) == len(set(keys)), where
        for parameter in parameters:
            assert parameter["in"] in ("query", "path", "header", "cookie") and "schema" in parameter, where
        # Every {wildcard} of the path is a required path parameter, and there are no others.
        in_path = set(re.findall(r"\{([^}]+)\}", path))
        declared = {p["name"] for p in parameters if p["in"] == "path"}
        assert in_path == declared, where
        assert all(p["required"] is True for p in parameters if p["in"] == "path"), where
        for requirement in operation.get("security", []):
            assert set(requirement) <= set(schemes), where
        if method in ("get", "delete"):
            assert "requestBody" not in operation, where


def test_every_reference_resolves() -> None:
    doc = document()

    def refs(node: object) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    found = list(refs(doc))
    assert found
    for ref in found:
        assert ref.startswith("#/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            node = node[part]
        assert isinstance(node, dict), ref
