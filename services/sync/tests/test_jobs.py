"""A sync job against the billing platform simulator, its events handed to the invoice
service's real handler: what ends up in the invoice schema, and what a re-read, a status
change, a removal, a crash or a redelivery do to it."""

import asyncio
import uuid
from datetime import timedelta

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common import metrics
from common.outbox import utcnow
from simulators.billing_platform_testing import BillingPlatformControl, BillingPlatformServer
from sync.jobs import JobRunner
from sync.models import Connection, JobState, Phase, SyncedRecord

from .conftest import Pipeline, connect


async def test_a_sync_imports_every_invoice_once_for_its_owner(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
    platform: BillingPlatformControl,
    platform_server: BillingPlatformServer,
    pipeline: Pipeline,
) -> None:
    account, key = platform.create_account(clients=5, invoices=230)
    connection_id = await connect(api, auth, platform_server.base_url, key)
    pages_before = metric("sync_pages_imported_total", kind="invoices")
    imported_before = metric("sync_invoices_total", result="imported")
    calls_before = metric(
        "provider_requests_total", provider="billing_platform", operation="invoices", outcome="ok"
    )

    connection = await pipeline.sync(connection_id)

    assert connection.state == JobState.IDLE
    assert connection.last_success_at is not None
    upstream = {i["id"]: i for i in platform.invoices(account)}
    imported = await pipeline.invoices(owner)
    assert set(imported) == set(upstream)
    sample = upstream[next(iter(upstream))]
    invoice = imported[sample["id"]]
    assert str(invoice.amount) == sample["amount"]
    assert invoice.status == sample["status"]
    assert invoice.external_number == sample["number"]
    assert invoice.source == "billing_platform"
    # 230 invoices at 50 a page, 4 pages a slice: the sync took turns (continuations).
    assert "continued" in pipeline.outcomes
    # Its progress in the metrics: five pages of invoices, every invoice imported once.
    assert metric("sync_pages_imported_total", kind="invoices") - pages_before == 5
    assert metric("sync_invoices_total", result="imported") - imported_before == 230
    ok_calls = metric(
        "provider_requests_total", provider="billing_platform", operation="invoices", outcome="ok"
    )
    assert ok_calls - calls_before == 5
    assert metric("sync_jobs_running") == 0


def metric(name: str, **labels: str) -> float:
    return metrics.sample(name, labels) or 0.0


async def test_reading_everything_again_sends_nothing_unchanged(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    platform: BillingPlatformControl,
    platform_server: BillingPlatformServer,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    _account, key = platform.create_account(invoices=120)
    connection_id = await connect(api, auth, platform_server.base_url, key)
    await pipeline.sync(connection_id)
    events_before = len(await pipeline.events())

    await _request_sync(sessionmaker, connection_id)
    connection = await pipeline.sync(connection_id)

    assert connection.state == JobState.IDLE
    assert len(await pipeline.events()) == events_before


async def test_status_changes_new_invoices_and_removals_upstream_reach_the_invoice(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
    platform: BillingPlatformControl,
    platform_server: BillingPlatformServer,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    account, key = platform.create_account(invoices=120)
    connection_id = await connect(api, auth, platform_server.base_url, key)
    await pipeline.sync(connection_id)
    first, second, third = platform.invoices(account)[:3]
    platform.set_status(account, first["id"], "paid")  # an old invoice, far behind the tail
    platform.remove_invoice(account, second["id"])
    added = platform.add_invoice(account, amount="42.50", status="past_due")

    await _request_sync(sessionmaker, connection_id)
    await pipeline.sync(connection_id)

    imported = await pipeline.invoices(owner)
    assert imported[first["id"]].status == "paid"
    assert imported[first["id"]].removed_upstream_at is None
    removed = imported[second["id"]]
    assert removed.removed_upstream_at is not None
    assert removed.status == "void"  # it was pending: nobody should chase it now
    assert imported[third["id"]].status == "pending"
    assert imported[added["id"]].status == "past_due"
    assert str(imported[added["id"]].amount) == "42.50"
    assert len(imported) == 121  # the removed one is kept, marked


async def test_a_redelivered_or_replayed_event_changes_nothing(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
    platform: BillingPlatformControl,
    platform_server: BillingPlatformServer,
    pipeline: Pipeline,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    account, key = platform.create_account(invoices=60)
    connection_id = await connect(api, auth, platform_server.base_url, key)
    await pipeline.sync(connection_id)
    target = platform.invoices(account)[0]
    platform.set_status(account, target["id"], "paid")
    await _request_sync(sessionmaker, connection_id)
    await pipeline.sync(connection_id)
    mine = [e for e in await pipeline.events() if e.data["connection_id"] == str(connection_id)]

    # Every event again, oldest first, as a consumer that lost its offsets would see them:
    # the older status must not come back, nothing may be doubled.
    for event in mine:
        await pipeline.apply(event)

    imported = await pipeline.invoices(owner)
    assert len(imported) == 60
    assert imported[target["id"]].status == "paid"


async def test_a_job_resumes_after_the_last_page_it_kept(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
    platform: BillingPlatformControl,
    platform_server: BillingPlatformServer,
    pipeline: Pipeline,
) -> None:
    account, key = platform.create_account(clients=2, invoices=300)
    connection_id = await connect(api, auth, platform_server.base_url, key)
    await pipeline.run_once(connection_id)  # one slice: the client page and 3 invoice pages
    after_slice = await pipeline.connection(connection_id)
    assert after_slice.phase == Phase.INVOICES
    assert after_slice.cursor is not None
    # The platform goes down for longer than a job retries: the job parks where it was.
    platform.fault("error", account_id=account, seconds=30)
    outcome = await pipeline.run_once(connection_id)
    parked = await pipeline.connection(connection_id)
    assert outcome == "parked"
    assert parked.state == JobState.PARKED
    assert parked.cursor == after_slice.cursor
    assert parked.last_error is not None
    assert "unavailable" in parked.last_error
    assert parked.next_attempt_at is not None
    platform.clear_faults()
    # The outage opened the host's circuit breaker; it lets a call through after a while.
    await asyncio.sleep(pipeline.runner.settings.breaker_open_seconds)
    requests_before = platform.requests()

    await _requeue_now(pipeline, connection_id)
    done = await pipeline.sync(connection_id)

    assert done.state == JobState.IDLE
    # Resumed, not restarted: the 3 remaining pages (and no client page) were read.
    assert platform.requests() - requests_before == 3
    assert set(await pipeline.invoices(owner)) == {i["id"] for i in platform.invoices(account)}


async def test_a_redelivered_job_cannot_run_while_another_worker_holds_the_lease(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    platform: BillingPlatformControl,
    platform_server: BillingPlatformServer,
    pipeline: Pipeline,
    runner: JobRunner,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    _account, key = platform.create_account(invoices=10)
    connection_id = await connect(api, auth, platform_server.base_url, key)
    job = await pipeline.job(connection_id)
    other = JobRunner(
        sessionmaker, runner.settings, runner.keyring, runner.platform, worker="other-worker"
    )
    # The other worker claimed the job and is still working on it (its lease is live).
    work = await other._claim(job)
    assert work is not None

    assert await runner.run(job) == "skipped"
    async with sessionmaker() as session:
        pages = await session.scalar(
            select(func.count())
            .select_from(SyncedRecord)
            .where(SyncedRecord.connection_id == connection_id)
        )
    assert pages == 0


async def _request_sync(
    sessionmaker: async_sessionmaker[AsyncSession], connection_id: uuid.UUID
) -> None:
    """What the scheduled dispatch does for a resting connection."""
    from sync import service

    async with sessionmaker() as session, session.begin():
        connection = await session.get(Connection, connection_id, with_for_update=True)
        assert connection is not None
        service.queue_job(session, connection, "schedule")


async def _requeue_now(pipeline: Pipeline, connection_id: uuid.UUID) -> None:
    """Make the parked job due and run the worker's requeue schedule once."""
    from sync import service

    async with pipeline.sync_sessions() as session, session.begin():
        await session.execute(
            update(Connection)
            .where(Connection.id == connection_id)
            # Not SQL's NOW() - 1, number arithmetic that makes second 99 at a whole minute.
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
    async with pipeline.sync_sessions() as session, session.begin():
        assert await service.requeue_due(session, pipeline.runner.settings) >= 1
