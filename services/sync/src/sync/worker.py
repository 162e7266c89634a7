"""The sync service's worker: the outbox relay, the job consumer (one consumer group over
`sync.jobs`, any number of workers), the user-events consumer, the schedule that queues
parked and lost jobs again, and the scheduled dispatch of every connection."""

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial

import httpx
from aiokafka import ConsumerRecord
from aiokafka.errors import CommitFailedError, KafkaError
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.db import create_engine, create_sessionmaker
from common.events import CloudEvent
from common.inbox import EventConsumer
from common.kafka import (
    create_consumer,
    ensure_topics,
    rewind_partitions_past_their_end,
    stop_client,
)
from common.logging import configure_logging, get_logger
from common.metrics import LagGauge, MetricsServer
from common.outbox import OutboxRelay
from common.runtime import Loop, run_every, run_loops, sleep_unless
from common.tracing import configure_tracing
from sync import consumers, service
from sync.commands import JOB_REQUESTED, JOBS_TOPIC, JobRequested
from sync.config import SyncSettings, get_settings
from sync.crypto import Keyring
from sync.jobs import JobRunner
from sync.models import InboxMessage, OutboxMessage
from sync.platform import PlatformApi

log = get_logger(__name__)

JOBS_GROUP = "sync-workers"
# Partitions of sync.jobs: how many owners' jobs the workers together run at once.
JOBS_PARTITIONS = 12


class JobConsumer:
    """Runs job messages: the partitions a worker holds run side by side, each in order.

    The offset is committed after the job ran, whatever its outcome: a job that could not
    finish is parked (or its lease lapses) and the schedule queues it again, so no message
    is needed twice. A partition moved to another worker mid-job is harmless: the other
    worker cannot claim the lease this one holds.
    """

    def __init__(self, runner: JobRunner, settings: SyncSettings) -> None:
        self.runner = runner
        self.settings = settings
        self.lag = LagGauge(JOBS_GROUP)

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.5
        bootstrap = self.settings.kafka_bootstrap_servers
        while not stop.is_set():
            consumer = create_consumer(
                bootstrap, [JOBS_TOPIC], JOBS_GROUP, self.settings.kafka_fetch_max_wait_ms
            )
            try:
                await ensure_topics(bootstrap, [JOBS_TOPIC], partitions=JOBS_PARTITIONS)
                await consumer.start()
                delay = 0.5
                while not stop.is_set():
                    fetched = await consumer.getmany(timeout_ms=500, max_records=JOBS_PARTITIONS)
                    if not fetched:
                        await rewind_partitions_past_their_end(consumer, JOBS_GROUP)
                        await self.lag.measure(consumer)
                        continue
                    await asyncio.gather(*(self._run_all(batch) for batch in fetched.values()))
                    try:
                        await consumer.commit(
                            {tp: batch[-1].offset + 1 for tp, batch in fetched.items() if batch}
                        )
                    except CommitFailedError:
                        log.warning("job_offsets_not_committed", reason="rebalanced")
                    await self.lag.measure(consumer)
            except (KafkaError, OSError) as exc:
                log.warning("job_consumer_waiting", error_type=type(exc).__name__, retry_in=delay)
                await sleep_unless(stop, delay)
                delay = min(delay * 2, 10)
            finally:
                self.lag.clear()
                await stop_client(consumer)

    async def _run_all(self, records: list[ConsumerRecord]) -> None:
        for record in records:
            try:
                event = CloudEvent.model_validate_json(record.value)
                if event.type != JOB_REQUESTED:
                    continue
                job = JobRequested.model_validate(event.data)
            except (ValidationError, ValueError, TypeError):
                log.error("job_message_unreadable", offset=record.offset)
                continue
            try:
                await self.runner.run(job)
            except Exception as exc:
                # The database is down: the lease lapses and the schedule queues the job again.
                log.warning("job_not_run", error_type=type(exc).__name__)


async def requeue(settings: SyncSettings, sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session, session.begin():
        count = await service.requeue_due(session, settings)
    if count:
        log.info("sync_jobs_requeued", count=count)
    return count


async def dispatch_all(
    sessionmaker: async_sessionmaker[AsyncSession], reason: str, batch: int = 500
) -> service.DispatchCount:
    """Queue a job for every resting connection, one committed batch at a time."""
    count = service.DispatchCount()
    after = None
    while True:
        async with sessionmaker() as session, session.begin():
            after = await service.dispatch_batch(session, after, batch, reason, count)
        if after is None:
            return count


async def run(settings: SyncSettings | None = None) -> None:
    settings = settings or get_settings()
    configure_logging(f"{settings.service_name}-worker", settings.log_level, settings.log_format)
    configure_tracing(f"{settings.service_name}-worker", settings)
    keyring = Keyring.parse(settings.connection_key.get_secret_value())
    engine = create_engine(settings.database_url.get_secret_value(), pool_size=JOBS_PARTITIONS)
    sessionmaker = create_sessionmaker(engine)
    bootstrap = settings.kafka_bootstrap_servers
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=50)) as http:
        runner = JobRunner(sessionmaker, settings, keyring, PlatformApi(http, settings))
        loops: list[Loop] = [
            OutboxRelay(sessionmaker, OutboxMessage, bootstrap).run,
            JobConsumer(runner, settings).run,
            EventConsumer(
                name=consumers.CONSUMER_GROUP,
                topics=consumers.TOPICS,
                handlers=consumers.HANDLERS,
                sessionmaker=sessionmaker,
                inbox_model=InboxMessage,
                bootstrap_servers=bootstrap,
                fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            ).run,
            partial(
                run_every,
                seconds=settings.recover_every_seconds,
                job=partial(requeue, settings, sessionmaker),
                name="requeue_sync_jobs",
            ),
        ]
        if settings.dispatch_every_seconds > 0:
            loops.append(
                partial(
                    _every_after_first,
                    seconds=settings.dispatch_every_seconds,
                    job=partial(dispatch_all, sessionmaker, "schedule"),
                )
            )
        metrics = MetricsServer(settings.metrics_port, settings.metrics_host)
        try:
            await run_loops(loops)
        finally:
            metrics.stop()
            await engine.dispose()


async def _every_after_first(
    stop: asyncio.Event, seconds: float, job: Callable[[], Awaitable[service.DispatchCount]]
) -> None:
    """The scheduled dispatch: first after one interval, so restarting workers does not
    queue every connection again."""
    while not stop.is_set():
        await sleep_unless(stop, seconds)
        if stop.is_set():
            return
        try:
            count = await job()
            log.info("sync_dispatched", **vars(count))
        except Exception as exc:
            log.warning("scheduled_job_failed", job="dispatch", error_type=type(exc).__name__)


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
