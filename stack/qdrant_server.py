"""A development stand-in for the Qdrant server: the REST calls streamrag makes, over the embedded store.

Embedded Qdrant (qdrant-client local mode) opens its folder in one process only, so on a machine
without a Qdrant server (this project's CI has no Docker and no way to fetch the server binary)
several pipeline processes, or a pipeline and an API in separate processes, cannot share an
index. This module serves one embedded store over Qdrant's own REST API, so every other process
uses the ordinary remote client (``STREAMRAG_QDRANT__URL``), exactly as against a real server.

It is not Qdrant: it serves the subset of the REST API that streamrag's clients call (collections,
payload indexes, aliases, upsert, delete, scroll, count, retrieve, query), with the embedded
engine's exact search and its durability (a write is committed to sqlite before the answer, so
``wait=true`` holds). Anything else answers 404 with a message that says so. Production runs the
real server (``docker-compose.yml``).

    streamrag stack qdrant-serve --port 6333 --path .data/qdrant-server
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python
from qdrant_client import models as qm
from qdrant_client.http.models import QueryResponse
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from streamrag.embedded_qdrant import EmbeddedClient

log = logging.getLogger("streamrag.qdrant_server")


class StoreError(Exception):
    """An error answered in Qdrant's format: ``{"status": {"error": ...}}`` with an HTTP status."""

    def __init__(self, http_status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status


def _ok(result: Any, started: float) -> JSONResponse:
    return JSONResponse(
        {"result": to_jsonable_python(result), "status": "ok", "time": time.perf_counter() - started}
    )


def _error(http_status: int, message: str) -> JSONResponse:
    return JSONResponse({"status": {"error": message}, "time": 0.0}, status_code=http_status)


@cache
def _adapter(model: Any) -> TypeAdapter[Any]:
    # Built once per request type: building one compiles its (large, union-heavy) schema.
    return TypeAdapter(model)


def _parse(model: Any, body: Any) -> Any:
    try:
        return _adapter(model).validate_python(body)
    except ValidationError as exc:
        raise StoreError(400, f"Format error in JSON body: {exc.errors(include_url=False)}") from exc


def _plain_nearest(client: Any, collection: str, spec: qm.QueryRequest, query: Any) -> list[Any] | None:
    """A plain nearest search (one named vector, a filter, a limit, payload keys) through the
    embedded store's numpy search, the one streamrag's own processes use; None for any other query,
    which local mode's general path answers. Tested equal to it."""
    if not isinstance(client, EmbeddedClient) or not isinstance(query, qm.NearestQuery) or query.mmr:
        return None
    vector, using = query.nearest, spec.using
    payload = spec.with_payload if spec.with_payload is not None else False
    if isinstance(payload, list) and any("." in f for f in payload):
        return None  # nested keys
    if not isinstance(payload, bool | list):
        return None  # include/exclude selectors
    dense = isinstance(vector, list) and all(isinstance(x, float | int) for x in vector)
    if (
        using is None
        or not (dense or isinstance(vector, qm.SparseVector))
        or spec.prefetch
        or spec.offset
        or spec.score_threshold is not None
        or spec.lookup_from is not None
        or spec.with_vector
    ):
        return None
    try:
        return client.fast_query(collection, vector, using, spec.filter, spec.limit or 10, payload)
    except KeyError:  # no such vector name: local mode's own path gives Qdrant's error for it
        return None


def build_app(client: Any, version: str, api_key: str | None = None) -> Starlette:
    """The REST app over ``client`` (an :class:`~streamrag.embedded_qdrant.EmbeddedClient`).

    ``version`` is the Qdrant version the app reports at ``GET /``; the remote client checks it
    against its own. With ``api_key``, every request must send it in the ``api-key`` header.
    """

    def route(path: str, method: str, fn: Callable[[Request, Any], Any]) -> Route:
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            if api_key is not None and not hmac.compare_digest(request.headers.get("api-key", ""), api_key):
                return _error(401, "Must provide an API key or an Authorization bearer token")
            try:
                body = await request.json() if method in ("POST", "PUT") else None
            except ValueError as exc:
                return _error(400, f"Format error in JSON body: {exc}")
            try:
                # In the thread pool: the embedded engine is synchronous and does its own locking.
                result = await run_in_threadpool(fn, request, body)
            except StoreError as exc:
                return _error(exc.http_status, str(exc))
            except (ValueError, KeyError) as exc:  # local mode's "Collection x not found", bad ids
                message = str(exc)
                code = 404 if "not found" in message.lower() else 400
                return _error(code, message)
            except Exception as exc:  # answered in Qdrant's format, and logged with its traceback
                log.exception("%s %s failed", method, request.url.path)
                return _error(500, f"Service internal error: {exc}")
            return _ok(result, started)

        return Route(path, endpoint, methods=[method])

    def name(request: Request) -> str:
        return str(request.path_params["collection_name"])

    # --- collections ---------------------------------------------------------------------------

    def exists(request: Request, _body: Any) -> Any:
        return qm.CollectionExistence(exists=client.collection_exists(name(request)))

    def get_collection(request: Request, _body: Any) -> Any:
        return client.get_collection(name(request))

    def list_collections(_request: Request, _body: Any) -> Any:
        return client.get_collections()

    def create_collection(request: Request, body: Any) -> Any:
        spec = _parse(qm.CreateCollection, body or {})
        if client.collection_exists(name(request)):
            raise StoreError(409, f"Wrong input: Collection `{name(request)}` already exists!")
        return client.create_collection(
            name(request),
            vectors_config=spec.vectors,
            sparse_vectors_config=spec.sparse_vectors,
        )

    def delete_collection(request: Request, _body: Any) -> Any:
        return client.delete_collection(name(request))

    def create_index(request: Request, body: Any) -> Any:
        spec = _parse(qm.CreateFieldIndex, body)
        return client.create_payload_index(name(request), spec.field_name, spec.field_schema)

    # --- aliases -------------------------------------------------------------------------------

    def aliases(_request: Request, _body: Any) -> Any:
        return client.get_aliases()

    def collection_aliases(request: Request, _body: Any) -> Any:
        return client.get_collection_aliases(name(request))

    def change_aliases(_request: Request, body: Any) -> Any:
        spec = _parse(qm.ChangeAliasesOperation, body)
        return client.update_collection_aliases(change_aliases_operations=spec.actions)

    # --- points --------------------------------------------------------------------------------

    def upsert(request: Request, body: Any) -> Any:
        spec = _parse(qm.PointInsertOperations, body)
        points = spec.points if isinstance(spec, qm.PointsList) else spec.batch
        # Every write is committed before it is answered: wait=false is answered like wait=true.
        return client.upsert(name(request), points=points, wait=True)

    def delete(request: Request, body: Any) -> Any:
        spec = _parse(qm.PointsSelector, body)
        return client.delete(name(request), points_selector=spec, wait=True)

    def scroll(request: Request, body: Any) -> Any:
        spec = _parse(qm.ScrollRequest, body or {})
        points, next_offset = client.scroll(
            name(request),
            scroll_filter=spec.filter,
            limit=spec.limit if spec.limit is not None else 10,
            order_by=spec.order_by,
            offset=spec.offset,
            with_payload=spec.with_payload if spec.with_payload is not None else True,
            with_vectors=spec.with_vector if spec.with_vector is not None else False,
        )
        return qm.ScrollResult(points=points, next_page_offset=next_offset)

    def count(request: Request, body: Any) -> Any:
        spec = _parse(qm.CountRequest, body or {})
        return client.count(name(request), count_filter=spec.filter, exact=spec.exact is not False)

    def retrieve(request: Request, body: Any) -> Any:
        spec = _parse(qm.PointRequest, body)
        return client.retrieve(
            name(request),
            ids=spec.ids,
            with_payload=spec.with_payload if spec.with_payload is not None else True,
            with_vectors=spec.with_vector if spec.with_vector is not None else False,
        )

    def answer(collection: str, spec: qm.QueryRequest) -> Any:
        q = spec.query
        if q is not None and not isinstance(q, BaseModel):
            q = qm.NearestQuery(nearest=q)  # a bare vector (or sparse vector, or id) means nearest
        points = _plain_nearest(client, collection, spec, q)
        if points is not None:
            return QueryResponse.model_construct(points=points)
        return client.query_points(
            collection,
            query=q,
            using=spec.using,
            prefetch=spec.prefetch,
            query_filter=spec.filter,
            search_params=spec.params,
            limit=spec.limit if spec.limit is not None else 10,
            offset=spec.offset,
            with_payload=spec.with_payload if spec.with_payload is not None else False,
            with_vectors=spec.with_vector if spec.with_vector is not None else False,
            score_threshold=spec.score_threshold,
            lookup_from=spec.lookup_from,
        )

    def query(request: Request, body: Any) -> Any:
        return answer(name(request), _parse(qm.QueryRequest, body))

    def query_batch(request: Request, body: Any) -> Any:
        return [answer(name(request), spec) for spec in _parse(qm.QueryRequestBatch, body).searches]

    async def root(_request: Request) -> Response:
        return JSONResponse({"title": "qdrant - vector search engine", "version": version})

    async def health(_request: Request) -> Response:
        return Response("healthz check passed", media_type="text/plain")

    async def unsupported(request: Request) -> Response:
        return _error(
            404,
            f"{request.method} {request.url.path} is not served by streamrag's development "
            "Qdrant stand-in (stack/qdrant_server.py); use a Qdrant server for it",
        )

    c = "/collections/{collection_name}"
    routes = [
        Route("/", root, methods=["GET"]),
        *(Route(p, health, methods=["GET"]) for p in ("/healthz", "/livez", "/readyz")),
        route("/collections", "GET", list_collections),
        route("/aliases", "GET", aliases),
        route("/collections/aliases", "POST", change_aliases),
        route(f"{c}/exists", "GET", exists),
        route(f"{c}/aliases", "GET", collection_aliases),
        route(f"{c}/index", "PUT", create_index),
        route(f"{c}/points", "PUT", upsert),
        route(f"{c}/points", "POST", retrieve),
        route(f"{c}/points/delete", "POST", delete),
        route(f"{c}/points/scroll", "POST", scroll),
        route(f"{c}/points/count", "POST", count),
        route(f"{c}/points/query", "POST", query),
        route(f"{c}/points/query/batch", "POST", query_batch),
        route(c, "GET", get_collection),
        route(c, "PUT", create_collection),
        route(c, "DELETE", delete_collection),
        Route("/{path:path}", unsupported, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]
    return Starlette(routes=routes)


def serve(path: Path, host: str, port: int, api_key: str | None = None) -> None:
    """Serve the embedded store at ``path`` until interrupted (it holds the folder's lock)."""
    import uvicorn

    from streamrag.config import QdrantSettings

    client = QdrantSettings(path=path).client()  # the embedded store, as every streamrag process opens it
    version = _client_version()
    log.info(
        "Qdrant stand-in (embedded store %s) on http://%s:%d, reporting version %s", path, host, port, version
    )
    try:
        uvicorn.run(build_app(client, version, api_key), host=host, port=port, log_level="warning")
    finally:
        client.close()


def _client_version() -> str:
    """The installed qdrant-client's version: the server version its compatibility check expects."""
    from importlib.metadata import version

    return version("qdrant-client")
