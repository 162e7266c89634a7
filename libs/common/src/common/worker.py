"""Every service's worker: the outbox relay, the service's consumer group with its inbox when
it consumes any topic, and the service's own schedules, until a signal stops them."""

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.config import BaseServiceSettings
from common.db import create_engine, create_sessionmaker
from common.inbox import EventConsumer, Handler, InboxMessageMixin
from common.logging import configure_logging
from common.metrics import MetricsServer
from common.outbox import OutboxMessageMixin, OutboxRelay
from common.runtime import Loop, run_every, run_loops
from common.tracing import configure_tracing


@dataclass(frozen=True)
class Schedule:
    """A job the worker runs now and then every `every_seconds`, in its own transactions."""

    name: str
    every_seconds: float
    job: Callable[[async_sessionmaker[AsyncSession]], Awaitable[object]]


async def run_worker(
    settings: BaseServiceSettings,
    *,
    outbox_model: type[OutboxMessageMixin],
    inbox_model: type[InboxMessageMixin],
    consumer_group: str,
    topics: list[str],
    handlers: dict[str, Handler],
    schedules: Sequence[Schedule] = (),
    loops: Sequence[Callable[[async_sessionmaker[AsyncSession]], Loop]] = (),
    pool_size: int = 4,
) -> None:
    """Run until a signal; `loops` are the service's own long-running jobs (built with the
    worker's sessions), next to the relay, the consumer and the schedules."""
    configure_logging(f"{settings.service_name}-worker", settings.log_level, settings.log_format)
    configure_tracing(f"{settings.service_name}-worker", settings)
    engine = create_engine(settings.database_url.get_secret_value(), pool_size=pool_size)
    sessionmaker = create_sessionmaker(engine)
    bootstrap_servers = settings.kafka_bootstrap_servers
    running: list[Loop] = [OutboxRelay(sessionmaker, outbox_model, bootstrap_servers).run]
    if topics:
        consumer = EventConsumer(
            name=consumer_group,
            topics=topics,
            handlers=handlers,
            sessionmaker=sessionmaker,
            inbox_model=inbox_model,
            bootstrap_servers=bootstrap_servers,
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        )
        running.append(consumer.run)
    for schedule in schedules:
        job = partial(schedule.job, sessionmaker)
        running.append(
            partial(run_every, seconds=schedule.every_seconds, job=job, name=schedule.name)
        )
    running.extend(make(sessionmaker) for make in loops)
    metrics = MetricsServer(settings.metrics_port, settings.metrics_host)
    try:
        await run_loops(running)
    finally:
        metrics.stop()
        await engine.dispose()
