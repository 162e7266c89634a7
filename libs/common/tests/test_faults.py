"""The fault schedule runs each fault at its time, ends it, and heals what a cancel left."""

import asyncio
from collections.abc import Awaitable, Callable

from common.testing.fault_proxy import FaultProxy
from common.testing.faults import Fault, FaultSchedule, proxy_latency


async def test_each_fault_begins_at_its_time_and_ends_after_its_duration() -> None:
    log: list[tuple[str, float]] = []
    loop = asyncio.get_running_loop()
    start = loop.time()

    def action(word: str) -> Callable[[], Awaitable[None]]:
        async def act() -> None:
            log.append((word, round(loop.time() - start, 1)))

        return act

    schedule = FaultSchedule(
        [
            Fault("second", "process", 0.1, 0.05, action("b2"), action("e2")),
            Fault("first", "network", 0.0, 0.3, action("b1"), action("e1")),
        ]
    )
    records = await schedule.run()

    assert [word for word, _ in log] == ["b1", "b2", "e2", "e1"]
    assert [record.name for record in records] == ["first", "second"]
    assert all(record.done for record in records)
    assert schedule.injected() == {"process": 1, "network": 1}


async def test_a_failing_action_is_recorded_and_the_fault_still_ends() -> None:
    ended = []

    async def broken() -> None:
        raise RuntimeError("no such process")

    async def end() -> None:
        ended.append(True)

    schedule = FaultSchedule([Fault("broken", "process", 0, 0, broken, end)])
    await schedule.run()
    assert ended == [True]
    assert [r.error for r in schedule.failed()] == ["begin: RuntimeError: no such process"]


async def test_a_cancelled_run_ends_the_faults_it_began() -> None:
    proxy = await FaultProxy("127.0.0.1", 9, name="nowhere").start()
    try:
        schedule = FaultSchedule([proxy_latency(proxy, 0, 60, ms=200)])
        run = asyncio.create_task(schedule.run())
        await asyncio.sleep(0.2)
        assert proxy.faults.upstream.fixed_ms == 100
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        assert proxy.faults.calm
        assert schedule.records[0].ended_at is not None
    finally:
        await proxy.stop()
