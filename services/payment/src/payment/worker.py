"""The payment service's worker: the outbox relay, the schedule that settles card charges
whose outcome was lost, and the clean-up of expired idempotency keys."""

import asyncio

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.idempotency import purge_schedule
from common.logging import get_logger
from common.worker import Schedule, run_worker
from payment import consumers, service
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


async def run() -> None:
    settings = get_settings()
    async with httpx.AsyncClient() as http:
        await run_worker(
            settings,
            outbox_model=OutboxMessage,
            inbox_model=InboxMessage,
            consumer_group=consumers.CONSUMER_GROUP,
            topics=consumers.TOPICS,
            handlers=consumers.HANDLERS,
            schedules=[
                reconcile_schedule(settings, create_provider(settings, http)),
                purge_schedule(IdempotencyKey),
            ],
        )


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
