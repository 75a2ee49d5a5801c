"""FastAPI routes of the lag monitor: ``/v1/lag``, ``/v1/lag/history``, ``/v1/freshness``, ``/dashboard``.

The API mounts ``lag_router(monitor)`` and owns the monitor's lifecycle (``monitor.start()`` at
startup, ``monitor.close()`` at shutdown) and the ``/metrics`` endpoint of ``monitor.registry``.
Handlers are plain ``def``: FastAPI runs them in its threadpool, so the rare on-demand sample (a
group nobody monitored before) does not block the event loop.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse

from serving.lag.models import FreshnessReport, LagHistory, LagReport
from serving.lag.monitor import LagMonitor
from serving.lag.offsets import KafkaUnavailable

_GROUP_QUERY = Query(
    default=None,
    min_length=1,
    max_length=255,
    description="Only this consumer group; one not monitored yet is sampled now and monitored from then on.",
)


def dashboard_html() -> str:
    """The dashboard page (``serving/lag/static/dashboard.html``): inline JS and canvas, no CDN."""
    return (resources.files("serving.lag") / "static" / "dashboard.html").read_text()


def lag_router(monitor: LagMonitor) -> APIRouter:
    """Routes reading ``monitor``'s reports. 503 when Kafka cannot be reached and nothing is cached."""
    router = APIRouter(tags=["lag"])
    page = dashboard_html()

    @router.get("/v1/lag", response_model=LagReport, summary="Consumer lag and status per group")
    def get_lag(group: str | None = _GROUP_QUERY) -> LagReport:
        try:
            return monitor.report(group)
        except KafkaUnavailable as exc:
            raise HTTPException(status_code=503, detail=f"Kafka unavailable: {exc}") from exc

    @router.get("/v1/lag/history", response_model=LagHistory, summary="Per-group lag totals over time")
    def get_lag_history(group: str | None = _GROUP_QUERY) -> LagHistory:
        return monitor.history(group)

    @router.get("/v1/freshness", response_model=FreshnessReport, summary="End-to-end freshness and DLQ")
    def get_freshness() -> FreshnessReport:
        report = monitor.freshness_report()
        if report is None:
            try:
                monitor.sample()  # nothing sampled yet: take the first sample now
            except KafkaUnavailable as exc:
                raise HTTPException(status_code=503, detail=f"Kafka unavailable: {exc}") from exc
            report = monitor.freshness_report()
        if report is None:
            raise HTTPException(status_code=404, detail="freshness monitoring is off for this monitor")
        return report

    @router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
    def dashboard() -> HTMLResponse:
        return HTMLResponse(page)

    return router
