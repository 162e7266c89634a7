"""Running a worker process: long-lived loops that stop cleanly on SIGTERM or Ctrl-C."""

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable

from common.logging import get_logger

log = get_logger(__name__)

Loop = Callable[[asyncio.Event], Awaitable[None]]


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, waking early when stop is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def run_every(
    stop: asyncio.Event, seconds: float, job: Callable[[], Awaitable[object]], name: str
) -> None:
    """Run a job now and then every `seconds`; a failed run is logged and tried next time."""
    while not stop.is_set():
        try:
            await job()
        except Exception as exc:
            log.warning("scheduled_job_failed", job=name, error_type=type(exc).__name__)
        await sleep_unless(stop, seconds)


async def run_loops(loops: list[Loop]) -> None:
    """Run the loops until a signal arrives, then let each finish its current step."""
    stop = asyncio.Event()
    event_loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        event_loop.add_signal_handler(sig, stop.set)
    log.info("worker_started", loops=len(loops))
    await asyncio.gather(*(loop(stop) for loop in loops))
    log.info("worker_stopped")
