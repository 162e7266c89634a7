"""`python -m sync.cli dispatch`: queue one sync job per user with a billing connection.

It walks the connections in batches, queueing a job (through the outbox, so jobs reach the
workers even when Kafka is down now) for every connection whose sync is resting, prints its
progress, and ends with a summary. Connections whose job is already queued, running or
parked are counted, not queued twice. The worker runs the same dispatch on a schedule.
"""

import argparse
import asyncio
import sys
import time

from sqlalchemy import func, select

from common.db import create_engine, create_sessionmaker
from sync import service
from sync.config import get_settings
from sync.models import Connection


async def dispatch(batch: int, reason: str = "dispatch") -> service.DispatchCount:
    settings = get_settings()
    engine = create_engine(settings.database_url.get_secret_value(), pool_size=1)
    sessionmaker = create_sessionmaker(engine)
    started = time.monotonic()
    count = service.DispatchCount()
    try:
        async with sessionmaker() as session:
            total = int(await session.scalar(select(func.count()).select_from(Connection)) or 0)
        print(f"Dispatching sync jobs for {total} users with a billing connection")
        after = None
        while True:
            async with sessionmaker() as session, session.begin():
                after = await service.dispatch_batch(session, after, batch, reason, count)
            if after is None:
                break
            done = f"{count.seen}/{total} users"
            print(f"  {done}: {count.queued} queued, {count.busy} already under way")
    finally:
        await engine.dispose()
    elapsed = time.monotonic() - started
    print(
        f"Done in {elapsed:.1f}s: {count.queued} jobs queued, {count.busy} already under way, "
        f"{count.seen} users seen"
    )
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sync.cli", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("dispatch", help="queue one sync job per connected user")
    run.add_argument("--batch", type=int, default=500, help="users per transaction")
    args = parser.parse_args(argv)
    if args.command == "dispatch":
        asyncio.run(dispatch(args.batch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
