"""Liveness, readiness (Kafka, Qdrant, embedder, generator) and Prometheus metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.api.deps import StateDep
from serving.api.models import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(state: StateDep, response: Response) -> Readiness:
    """Ready when Kafka, Qdrant, the embedder and the generator all answer."""
    detail: dict[str, str] = {}

    def kafka_ok() -> bool:
        from confluent_kafka.admin import AdminClient

        try:
            return bool(AdminClient(state.settings.kafka.librdkafka()).list_topics(timeout=3).brokers)
        except Exception as exc:
            detail["kafka"] = str(exc)
            return False

    def qdrant_ok() -> bool:
        try:
            alias = state.settings.qdrant.collection
            return bool(state.store.resolve(alias) or state.store.exists(alias))
        except Exception as exc:
            detail["qdrant"] = str(exc)
            return False

    def embedder_ok() -> bool:
        try:
            return len(state.encoder.dense("ready?")) > 0
        except Exception as exc:
            detail["embedder"] = str(exc)
            return False

    kafka, qdrant, embedder = await asyncio.gather(
        asyncio.to_thread(kafka_ok), asyncio.to_thread(qdrant_ok), asyncio.to_thread(embedder_ok)
    )
    generator = await state.generator.healthy()
    checks = {"kafka": kafka, "qdrant": qdrant, "embedder": embedder, "generator": generator}
    if not qdrant and "qdrant" not in detail:
        detail["qdrant"] = f"collection alias {state.settings.qdrant.collection!r} does not exist yet"
    if not generator:
        detail["generator"] = f"no answer from {state.generator.base_url}/health"
    ready = all(checks.values())
    if not ready:
        response.status_code = 503
    return Readiness(ready=ready, checks=checks, detail=detail)


@router.get("/metrics", include_in_schema=False)
def metrics(state: StateDep) -> Response:
    return Response(generate_latest(state.registry), media_type=CONTENT_TYPE_LATEST)
