"""The sync API: connections with a write-only API key, status, and asking for a sync."""

import uuid

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.testing.identity import TestIssuer
from simulators.billing_platform_testing import BillingPlatformServer
from sync.models import Connection, JobState

from .conftest import connect

SECRET_KEY = "sk_test_the-owners-very-secret-key"


async def test_the_api_key_is_sealed_and_never_returned(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
    platform_server: BillingPlatformServer,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    response = await api.post(
        "/api/sync/connections",
        json={"base_url": platform_server.base_url + "/", "api_key": SECRET_KEY},
        headers=auth,
    )

    assert response.status_code == 201
    assert SECRET_KEY not in response.text
    assert response.json()["base_url"] == platform_server.base_url
    listed = await api.get("/api/sync/connections", headers=auth)
    assert SECRET_KEY not in listed.text
    assert [item["id"] for item in listed.json()["items"]] == [response.json()["id"]]
    async with sessionmaker() as session:
        stored = await session.scalar(select(Connection).where(Connection.owner_id == owner))
    assert stored is not None
    assert SECRET_KEY.encode() not in stored.api_key_sealed
    assert stored.api_key_key_id == "k1"
    # The first sync is queued as the platform is connected.
    assert stored.state == JobState.QUEUED


async def test_one_connection_per_owner(
    api: httpx.AsyncClient, auth: dict[str, str], platform_server: BillingPlatformServer
) -> None:
    await connect(api, auth, platform_server.base_url, SECRET_KEY)
    again = await api.post(
        "/api/sync/connections",
        json={"base_url": platform_server.base_url, "api_key": SECRET_KEY},
        headers=auth,
    )
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"


async def test_a_platform_url_outside_the_allowed_hosts_is_refused(
    api: httpx.AsyncClient, auth: dict[str, str], owner: uuid.UUID
) -> None:
    for url in ("http://169.254.169.254/latest", "file:///etc/passwd", "http://u:p@127.0.0.1:1/"):
        response = await api.post(
            "/api/sync/connections", json={"base_url": url, "api_key": SECRET_KEY}, headers=auth
        )
        assert response.status_code == 422, url
        assert response.json()["errors"][0]["field"] == "base_url"
        assert SECRET_KEY not in response.text
    listed = await api.get("/api/sync/connections", headers=auth)
    assert listed.json()["items"] == []


async def test_a_bad_body_names_the_field_and_does_not_echo_the_key(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await api.post(
        "/api/sync/connections", json={"base_url": 12, "api_key": "short"}, headers=auth
    )
    assert response.status_code == 422
    fields = {error["field"] for error in response.json()["errors"]}
    assert fields == {"base_url", "api_key"}
    assert "short" not in response.text


async def test_another_owners_connection_is_not_found(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    test_issuer: TestIssuer,
    platform_server: BillingPlatformServer,
) -> None:
    connection_id = await connect(api, auth, platform_server.base_url, SECRET_KEY)
    stranger = test_issuer.headers(uuid.uuid4())

    deleted = await api.delete(f"/api/sync/connections/{connection_id}", headers=stranger)
    status = await api.get("/api/sync/status", headers=stranger)
    listed = await api.get("/api/sync/connections", headers=stranger)

    assert deleted.status_code == 404
    assert status.status_code == 404
    assert listed.json()["items"] == []
    assert (await api.get("/api/sync/status", headers=auth)).status_code == 200


async def test_deleting_forgets_the_connection(
    api: httpx.AsyncClient, auth: dict[str, str], platform_server: BillingPlatformServer
) -> None:
    connection_id = await connect(api, auth, platform_server.base_url, SECRET_KEY)
    response = await api.delete(f"/api/sync/connections/{connection_id}", headers=auth)
    assert response.status_code == 204
    assert (await api.get("/api/sync/connections", headers=auth)).json()["items"] == []
    assert (await api.get("/api/sync/status", headers=auth)).status_code == 404


async def test_status_shows_progress_and_a_run_can_be_asked_for_once_a_minute(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    platform_server: BillingPlatformServer,
    sessionmaker: async_sessionmaker[AsyncSession],
    owner: uuid.UUID,
) -> None:
    await connect(api, auth, platform_server.base_url, SECRET_KEY)
    async with sessionmaker() as session, session.begin():
        connection = await session.scalar(select(Connection).where(Connection.owner_id == owner))
        assert connection is not None
        connection.state = JobState.IDLE

    status = await api.get("/api/sync/status", headers=auth)
    first = await api.post("/api/sync/runs", headers=auth)
    second = await api.post("/api/sync/runs", headers=auth)

    assert status.status_code == 200
    assert set(status.json()) >= {"state", "pages_read", "last_success_at", "last_error"}
    assert first.status_code == 202
    assert first.json()["state"] == "queued"
    assert second.status_code == 429
    assert int(second.headers["retry-after"]) > 0


async def test_every_endpoint_needs_a_token(api: httpx.AsyncClient) -> None:
    for method, path in (
        ("GET", "/api/sync/connections"),
        ("POST", "/api/sync/connections"),
        ("DELETE", f"/api/sync/connections/{uuid.uuid4()}"),
        ("GET", "/api/sync/status"),
        ("POST", "/api/sync/runs"),
    ):
        response = await api.request(method, path)
        assert response.status_code == 401, path


async def test_a_deleted_account_loses_its_connection_and_sealed_key(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
    platform_server: BillingPlatformServer,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    from common.events import CloudEvent
    from sync.consumers import on_user_deleted

    await connect(api, auth, platform_server.base_url, SECRET_KEY)
    event = CloudEvent(
        source="/services/user",
        type="user.deleted",
        subject=str(owner),
        data={"user_id": str(owner)},
    )
    async with sessionmaker() as session, session.begin():
        await on_user_deleted(session, event)

    async with sessionmaker() as session:
        assert await session.scalar(select(Connection).where(Connection.owner_id == owner)) is None
