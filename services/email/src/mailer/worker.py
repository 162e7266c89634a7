"""The email service's worker: the consumers that queue messages, the dispatcher that hands
them to the providers, and the outbox relay."""

import asyncio

import httpx

from common.worker import run_worker
from mailer import consumers
from mailer.config import get_settings
from mailer.dispatcher import AttachmentStore, Dispatcher
from mailer.models import InboxMessage, OutboxMessage
from mailer.providers import create_providers


async def run() -> None:
    settings = get_settings()
    async with httpx.AsyncClient() as http:
        providers = create_providers(settings, http)
        store = AttachmentStore(settings)
        await run_worker(
            settings,
            outbox_model=OutboxMessage,
            inbox_model=InboxMessage,
            consumer_group=consumers.CONSUMER_GROUP,
            topics=consumers.TOPICS,
            handlers=consumers.HANDLERS,
            loops=[lambda sessionmaker: Dispatcher(sessionmaker, providers, settings, store).run],
        )


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
