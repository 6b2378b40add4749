"""Operational endpoints: health and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from voicechat.api import metrics
from voicechat.api.deps import Res
from voicechat.api.health import Health, check_health

router = APIRouter(tags=["operations"])


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "a component is down"}},
)
async def health(resources: Res) -> JSONResponse:
    """The state of PostgreSQL, Valkey, storage and the native module; 503 when any is down."""
    report = await check_health(resources)
    return JSONResponse(report.model_dump(), status_code=200 if report.status == "ok" else 503)


@router.get(
    "/health/ready",
    response_model=Health,
    responses={503: {"model": Health, "description": "PostgreSQL or Valkey is down"}},
)
async def ready(resources: Res) -> JSONResponse:
    """Whether this instance can serve requests: 503 only when a component every request needs
    (PostgreSQL, Valkey, the native module) is down. Storage or voice being down degrades
    `/health` but not this, so a load balancer keeps routing chat to the instance.
    """
    report = await check_health(resources)
    return JSONResponse(report.model_dump(), status_code=200 if report.ready else 503)


@router.get("/metrics", response_class=Response, include_in_schema=False)
async def prometheus_metrics() -> Response:
    """Prometheus exposition text."""
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)
