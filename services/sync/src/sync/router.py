"""HTTP endpoints: parse, call one service function, shape the reply."""

import uuid
from typing import Any

from fastapi import APIRouter, Response, status

from common.auth import CurrentUser
from common.db import ReadSessionDep, SessionDep
from sync import service
from sync.dependencies import KeyringDep, SettingsDep
from sync.schemas import ConnectionCreate, ConnectionList, ConnectionRead, SyncStatus

PROBLEM = "application/problem+json"


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM: {}}}


router = APIRouter(prefix="/api/sync", tags=["sync"])


@router.post(
    "/connections",
    status_code=status.HTTP_201_CREATED,
    response_model=ConnectionRead,
    summary="Connect the owner's billing platform; its first sync is queued at once",
    responses={
        409: _problem("A platform is already connected"),
        422: _problem("Invalid input, or a base_url this service may not call"),
    },
)
async def create_connection(
    body: ConnectionCreate,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    keyring: KeyringDep,
) -> ConnectionRead:
    new = service.NewConnection(body.base_url, body.api_key.get_secret_value())
    connection = await service.create_connection(session, settings, keyring, user.id, new)
    return ConnectionRead.model_validate(connection, from_attributes=True)


@router.get("/connections", response_model=ConnectionList, summary="The owner's connections")
async def list_connections(user: CurrentUser, session: ReadSessionDep) -> ConnectionList:
    connections = await service.list_connections(session, user.id)
    return ConnectionList(
        items=[ConnectionRead.model_validate(c, from_attributes=True) for c in connections]
    )


@router.delete(
    "/connections/{connection_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Disconnect; invoices imported so far stay",
    responses={404: _problem("No such connection for this user")},
)
async def delete_connection(
    connection_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> Response:
    await service.delete_connection(session, user.id, connection_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/status",
    response_model=SyncStatus,
    summary="Progress of the current sync, the last success and the last error",
    responses={404: _problem("No platform is connected")},
)
async def sync_status(user: CurrentUser, session: ReadSessionDep) -> SyncStatus:
    return SyncStatus.of(await service.status_of(session, user.id))


@router.post(
    "/runs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SyncStatus,
    summary="Sync now (at most once a minute); a sync already under way is not doubled",
    responses={
        404: _problem("No platform is connected"),
        429: _problem("A sync was asked for a moment ago; see Retry-After"),
    },
)
async def request_run(user: CurrentUser, session: SessionDep, settings: SettingsDep) -> SyncStatus:
    return SyncStatus.of(await service.request_run(session, settings, user.id))
