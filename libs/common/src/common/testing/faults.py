"""A fault schedule: what breaks when, for how long, and a record of what was done.

The drill (scripts/drill.py) and the load test run the same schedule against a running suite.
A `Fault` is a name, a kind, a start time (seconds after the schedule starts), a duration and
two actions, `begin` and `end`; `FaultSchedule.run()` starts each at its time, ends it after
its duration (also when the run is cancelled: nothing is left broken), and records what
happened in `FaultRecord`s for the report.

The makers below build the faults a suite meets: a process killed with SIGKILL and started
again, a server stopped and started again, a `FaultProxy` made slow, lossy or unreachable,
and the simulators' own fault switches (FakePay, the email providers, the billing platform).
"""

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from common.testing.fault_proxy import FaultProxy

Action = Callable[[], Awaitable[Any]]


async def _nothing() -> None:
    return None


@dataclass
class Fault:
    name: str  # what a reader of the report sees: "kill -9 payment-worker"
    kind: str  # process, database, broker, provider, network
    at: float  # seconds after the schedule starts
    duration: float  # seconds between begin and end
    begin: Action
    end: Action = _nothing


@dataclass
class FaultRecord:
    name: str
    kind: str
    began_at: float = 0.0  # seconds after the schedule started
    ended_at: float | None = None
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.ended_at is not None and self.error is None


@dataclass
class FaultSchedule:
    faults: list[Fault]
    records: list[FaultRecord] = field(default_factory=list)
    started: float = 0.0

    @property
    def length(self) -> float:
        """When the last fault ends."""
        return max((f.at + f.duration for f in self.faults), default=0.0)

    async def run(self) -> list[FaultRecord]:
        """Run every fault at its time; returns when all have ended."""
        self.started = time.monotonic()
        tasks = [asyncio.create_task(self._one(fault)) for fault in self.faults]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return self.records

    async def _one(self, fault: Fault) -> None:
        await asyncio.sleep(max(0.0, self.started + fault.at - time.monotonic()))
        record = FaultRecord(fault.name, fault.kind, time.monotonic() - self.started)
        self.records.append(record)
        try:
            await fault.begin()
            await asyncio.sleep(fault.duration)
        except asyncio.CancelledError:
            await self._end(fault, record)
            raise
        except Exception as error:
            record.error = f"begin: {type(error).__name__}: {error}"
        await self._end(fault, record)

    async def _end(self, fault: Fault, record: FaultRecord) -> None:
        try:
            # Shielded: a cancelled run still heals what it broke.
            await asyncio.shield(fault.end())
        except Exception as error:
            record.error = (record.error or "") + f" end: {type(error).__name__}: {error}"
        record.ended_at = time.monotonic() - self.started

    def injected(self) -> Counter[str]:
        """Faults begun, by kind."""
        return Counter(record.kind for record in self.records)

    def failed(self) -> list[FaultRecord]:
        return [record for record in self.records if record.error]


class Restartable(Protocol):
    """A process that can be killed and started again (common.testing.durable.ManagedProcess)."""

    def kill(self) -> None: ...

    def stop(self) -> None: ...

    def start(self) -> None: ...


def kill_and_restart(name: str, process: Restartable, at: float, down: float = 1.0) -> Fault:
    """SIGKILL mid-flow; started again after `down` seconds."""
    return Fault(
        f"kill -9 {name}",
        "process",
        at,
        down,
        lambda: asyncio.to_thread(process.kill),
        lambda: asyncio.to_thread(process.start),
    )


def stop_and_restart(
    name: str, process: Restartable, at: float, down: float, kind: str, hard: bool = False
) -> Fault:
    """A server stopped (SIGTERM, or SIGKILL when `hard`) for `down` seconds, then started."""
    verb = "kill -9" if hard else "stop"
    return Fault(
        f"{verb} {name} for {down:g}s",
        kind,
        at,
        down,
        lambda: asyncio.to_thread(process.kill if hard else process.stop),
        lambda: asyncio.to_thread(process.start),
    )


def proxy_latency(
    proxy: FaultProxy, at: float, duration: float, ms: float, jitter_ms: float = 0.0
) -> Fault:
    async def begin() -> None:
        proxy.set_latency(upstream_ms=ms / 2, downstream_ms=ms / 2, jitter_ms=jitter_ms)

    async def end() -> None:
        proxy.set_latency()

    return Fault(f"{proxy.name}: +{ms:g} ms (±{jitter_ms:g})", "network", at, duration, begin, end)


def proxy_resets(proxy: FaultProxy, at: float, duration: float, rate: float = 0.2) -> Fault:
    """Every open connection reset at once, and `rate` of new ones for `duration`."""

    async def begin() -> None:
        proxy.set_reset_rate(rate)
        await proxy.reset_all()

    async def end() -> None:
        proxy.set_reset_rate(0.0)

    return Fault(f"{proxy.name}: resets ({rate:.0%} of new)", "network", at, duration, begin, end)


def proxy_down(proxy: FaultProxy, at: float, duration: float) -> Fault:
    return Fault(f"{proxy.name}: unreachable", "network", at, duration, proxy.down, proxy.up)


async def _control(method: str, url: str, body: Any = None) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.request(method, url, json=body)
        answer.raise_for_status()


def fakepay_outage(
    fakepay_url: str, at: float, duration: float, mode: str = "error", delay: float = 0.0
) -> Fault:
    """FakePay answering 503 (`error`), late (`slow`, `delay` s) or not at all (`hang`) for
    `duration` seconds; its own fault switch ends it (docs/fakepay.md)."""
    spec: dict[str, Any] = {"mode": mode, "seconds": duration}
    if delay:
        spec["delay"] = delay
    return Fault(
        f"FakePay {mode}" + (f" {delay:g}s" if delay else ""),
        "provider",
        at,
        duration,
        lambda: _control("POST", f"{fakepay_url}/_control/faults", spec),
    )


def billing_platform_outage(
    platform_url: str, at: float, duration: float, mode: str = "error", delay: float = 0.0
) -> Fault:
    """The billing platform failing (`error`, `reset`, `rate_limit`) or slow (`slow`) for
    `duration` seconds (docs/billing_api.md)."""
    spec: dict[str, Any] = {"mode": mode, "seconds": duration}
    if delay:
        spec["delay"] = delay
    return Fault(
        f"billing platform {mode}" + (f" {delay:g}s" if delay else ""),
        "provider",
        at,
        duration,
        lambda: _control("POST", f"{platform_url}/_control/faults", spec),
    )


def mail_provider_outage(
    mail_url: str,
    provider: str,
    at: float,
    duration: float,
    mode: str = "error",
    delay: float = 0.0,
    keep: list[dict[str, Any]] | None = None,
) -> Fault:
    """One email provider failing (`error` 500, `rate_limited`, `hang`, `timeout`) until the
    fault is cleared; `keep` are that provider's standing faults (bouncing addresses) laid
    again after the clearing, which removes all of the provider's faults."""
    spec: dict[str, Any] = {"provider": provider, "mode": mode}
    if delay:
        spec["delay"] = delay

    async def end() -> None:
        await _control("DELETE", f"{mail_url}/_control/faults?provider={provider}")
        for standing in keep or []:
            await _control("POST", f"{mail_url}/_control/faults", standing)

    return Fault(
        f"{provider} {mode}" + (f" {delay:g}s" if delay else ""),
        "provider",
        at,
        duration,
        lambda: _control("POST", f"{mail_url}/_control/faults", spec),
        end,
    )
