"""Faults of the platform: short ones retried, long ones parked, a failing host's breaker,
and bad data logged and skipped or parked, never half-written."""

import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from common.metrics import sample
from common.testing.identity import TestIssuer
from simulators.billing_platform import FaultMode
from simulators.billing_platform_testing import BillingPlatformControl, BillingPlatformServer
from sync.models import JobState

from .conftest import Pipeline, connect


async def test_short_faults_are_retried_and_the_sync_completes(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
    platform: BillingPlatformControl,
    platform_server: BillingPlatformServer,
    pipeline: Pipeline,
) -> None:
    account, key = platform.create_account(invoices=150)
    connection_id = await connect(api, auth, platform_server.base_url, key)
    platform.fault("reset", account_id=account, times=1)
    platform.fault("error", account_id=account, times=1)
    platform.fault("rate_limit", account_id=account, times=1, retry_after=1)
    platform.fault("malformed", account_id=account, times=1)
    platform.fault("hang", account_id=account, times=1, delay=3)  # past the 2 s timeout

    connection = await pipeline.sync(connection_id)

    assert connection.state == JobState.IDLE
    assert connection.failures == 0
    assert set(await pipeline.invoices(owner)) == {i["id"] for i in platform.invoices(account)}


async def test_a_refused_key_fails_the_job_without_retrying(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    platform_server: BillingPlatformServer,
    pipeline: Pipeline,
) -> None:
    connection_id = await connect(api, auth, platform_server.base_url, "sk_not_a_key_it_knows")
    connection = await pipeline.sync(connection_id)
    assert connection.state == JobState.FAILED
    assert connection.last_error == "the platform refused the API key"
    assert connection.next_attempt_at is None


async def test_a_failing_host_opens_its_breaker(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    platform: BillingPlatformControl,
    platform_server: BillingPlatformServer,
    pipeline: Pipeline,
) -> None:
    account, key = platform.create_account(invoices=10)
    connection_id = await connect(api, auth, platform_server.base_url, key)
    platform.fault("error", account_id=account, seconds=30)
    await pipeline.run_once(connection_id)
    before = platform.requests()

    # Another job at once: the breaker is open, the platform is not called at all.
    await _run_parked_job_now(pipeline, connection_id)

    parked = await pipeline.connection(connection_id)
    assert parked.state == JobState.PARKED
    assert parked.last_error is not None
    assert "circuit breaker open" in parked.last_error
    assert platform.requests() == before
    breaker = f"billing_platform:{urlsplit(platform_server.base_url).netloc}"
    assert sample("circuit_breaker_state", {"breaker": breaker}) == 2


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("malformed", "not JSON"),
        ("repeat_page", "same page"),
        ("huge_page", "a page of"),
    ],
)
async def test_a_page_no_retry_mends_parks_the_job_and_writes_nothing(
    mode: FaultMode,
    error: str,
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
    platform: BillingPlatformControl,
    platform_server: BillingPlatformServer,
    pipeline: Pipeline,
) -> None:
    account, key = platform.create_account(invoices=300)
    connection_id = await connect(api, auth, platform_server.base_url, key)
    await pipeline.run_once(connection_id)  # clients and 3 of the 6 invoice pages
    kept = await pipeline.invoices(owner)
    checkpoint = (await pipeline.connection(connection_id)).cursor
    platform.fault(mode, account_id=account, path="/v1/invoices", seconds=60)
    await _run_parked_job_now(pipeline, connection_id)

    connection = await pipeline.connection(connection_id)
    assert connection.state == JobState.PARKED
    assert connection.last_error is not None
    assert error in connection.last_error
    assert connection.cursor == checkpoint
    assert set(await pipeline.invoices(owner)) == set(kept)


async def test_bad_invoices_are_skipped_alone_and_counted(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
    platform: BillingPlatformControl,
    platform_server: BillingPlatformServer,
    pipeline: Pipeline,
) -> None:
    account, key = platform.create_account(invoices=100)
    connection_id = await connect(api, auth, platform_server.base_url, key)
    platform.fault("absurd_amount", account_id=account, path="/v1/invoices", times=1)
    platform.fault("missing_fields", account_id=account, path="/v1/invoices", times=1)

    connection = await pipeline.sync(connection_id)

    upstream = [i["id"] for i in platform.invoices(account)]
    imported = await pipeline.invoices(owner)
    assert connection.state == JobState.IDLE
    # The newest fault first: the first page lost its amounts and statuses, the second page's
    # first invoice has an absurd amount. None of them is imported, half or whole.
    skipped = set(upstream[:50]) | {upstream[50]}
    assert set(imported) == set(upstream) - skipped
    assert connection.invoices_skipped == 51
    assert connection.last_error is not None
    assert connection.last_error.startswith("skipped: record")
    # They are not taken for removed either; the next sync brings them.
    assert all(invoice.removed_upstream_at is None for invoice in imported.values())


async def _run_parked_job_now(pipeline: Pipeline, connection_id: uuid.UUID) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from common.outbox import utcnow
    from sync import service
    from sync.models import Connection

    async with pipeline.sync_sessions() as session, session.begin():
        await session.execute(
            update(Connection)
            .where(Connection.id == connection_id)
            # Not SQL's NOW() - 1: that is arithmetic on the number 20261130150000, and at a
            # whole minute it makes second 99, a date MariaDB refuses.
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
    connection = await pipeline.connection(connection_id)
    if connection.state == JobState.PARKED:
        async with pipeline.sync_sessions() as session, session.begin():
            await service.requeue_due(session, pipeline.runner.settings)
    else:
        assert connection.state == JobState.QUEUED
    await pipeline.run_once(connection_id)


async def test_the_first_parked_job_to_get_through_wakes_the_others_on_its_platform(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    test_issuer: TestIssuer,
    platform: BillingPlatformControl,
    platform_server: BillingPlatformServer,
    pipeline: Pipeline,
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from common.outbox import utcnow
    from sync.models import Connection

    _first_account, first_key = platform.create_account(invoices=10)
    _second_account, second_key = platform.create_account(invoices=10)
    first = await connect(api, auth, platform_server.base_url, first_key)
    second = await connect(
        api, test_issuer.headers(uuid.uuid4()), platform_server.base_url, second_key
    )
    later = utcnow() + timedelta(minutes=10)
    async with pipeline.sync_sessions() as session, session.begin():
        await session.execute(
            update(Connection)
            .where(Connection.id.in_([first, second]))
            .values(
                state=JobState.PARKED,
                job_token=None,
                next_attempt_at=later,
                last_error="platform unavailable: circuit breaker open for the platform",
            )
        )

    # The first one's backoff ends; the platform answers again.
    await _run_parked_job_now(pipeline, first)

    woken = await pipeline.connection(second)
    assert woken.state == JobState.PARKED
    assert woken.next_attempt_at is not None
    assert woken.next_attempt_at <= utcnow()
