"""Liveness and readiness: live means the process answers, ready means its database and the
broker answer too, so a load balancer sends traffic only where it can be served."""

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from common.kafka import broker_answers

router = APIRouter(tags=["health"])
State = Literal["UP", "DOWN"]


class HealthStatus(BaseModel):
    status: State


class Readiness(BaseModel):
    status: State
    checks: dict[str, State]


def answers_with(model: type[BaseModel], description: str) -> dict[int | str, dict[str, Any]]:
    """A 503 that carries the same JSON as the 200, for health endpoints' documents."""
    return {503: {"model": model, "description": description}}


async def database_answers(engine: AsyncEngine) -> bool:
    """True when `SELECT 1` succeeds on the service's schema; asked again once on a fresh
    connection when the pooled one was found dead (the pool does not ping before use)."""
    for attempt in range(2):
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            return True
        except DBAPIError as error:
            if attempt or not error.connection_invalidated:
                return False
        except OSError:
            return False
    return False


@router.get("/health/live", summary="The process is up", response_model=HealthStatus)
async def live() -> dict[str, str]:
    return {"status": "UP"}


@router.get(
    "/health/ready",
    summary="The database and the broker answer",
    response_model=Readiness,
    responses=answers_with(Readiness, "The database or the broker does not answer"),
)
async def ready(request: Request) -> JSONResponse:
    checks = {
        "database": await database_answers(request.app.state.engine),
        "broker": await broker_answers(request.app.state.settings.kafka_bootstrap_servers),
    }
    up = all(checks.values())
    return JSONResponse(
        {
            "status": "UP" if up else "DOWN",
            "checks": {name: "UP" if ok else "DOWN" for name, ok in checks.items()},
        },
        status_code=200 if up else 503,
    )
