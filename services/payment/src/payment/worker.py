"""The payment service's worker: the outbox relay, the consumer of user and invoice events,
the schedule that settles card charges whose outcome was lost, the monthly billing run, and
the clean-up of expired idempotency keys."""

import asyncio

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.idempotency import purge_schedule
from common.logging import get_logger
from common.worker import Schedule, run_worker
from payment import billing, consumers, service
from payment.config import PaymentSettings, get_settings
from payment.models import IdempotencyKey, InboxMessage, OutboxMessage
from payment.providers import PaymentProvider, create_provider

log = get_logger(__name__)


def reconcile_schedule(settings: PaymentSettings, provider: PaymentProvider) -> Schedule:
    """Every few seconds, settle attempts older than the provider timeout."""

    async def reconcile(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
        settled = await service.reconcile_unsettled(
            service.Charging(sessionmaker, provider, settings)
        )
        if settled:
            log.info("payments_reconciled", count=settled)
        return settled

    return Schedule("reconcile_payments", settings.reconcile_every_seconds, reconcile)


def billing_schedule(
    settings: PaymentSettings, provider: PaymentProvider, clock: billing.Clock = billing.utc_clock
) -> Schedule:
    """Every tick: start the month's run if it is due and nobody has, then charge what is
    due. Every worker runs it; the lease and the claims share the work out."""
    state: dict[str, billing.Billing] = {}

    async def run_billing(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
        if "billing" not in state:
            state["billing"] = billing.Billing(sessionmaker, provider, settings, clock)
        return await billing.tick(state["billing"])

    return Schedule("billing_run", settings.billing_tick_seconds, run_billing)


async def run() -> None:
    settings = get_settings()
    # Enough connections for the billing run's charges in flight.
    limits = httpx.Limits(max_connections=settings.billing_concurrency + 10)
    async with httpx.AsyncClient(limits=limits) as http:
        provider = create_provider(settings, http)
        await run_worker(
            settings,
            outbox_model=OutboxMessage,
            inbox_model=InboxMessage,
            consumer_group=consumers.CONSUMER_GROUP,
            topics=consumers.TOPICS,
            handlers=consumers.HANDLERS,
            schedules=[
                reconcile_schedule(settings, provider),
                billing_schedule(settings, provider),
                purge_schedule(IdempotencyKey),
            ],
            pool_size=max(4, settings.billing_concurrency // 2),
        )


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
