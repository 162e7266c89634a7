"""A loopback TCP proxy that puts a network's faults between a service and what it talks to.

`tc netem` does not work on the development machines and no Toxiproxy binary is available, so
tests and the drill (scripts/drill.py) point a service's address for MySQL, the broker or a
provider at a `FaultProxy` and break the link at run time:

- latency, fixed plus random jitter, separately for each direction (`upstream` is from the
  client to the target, `downstream` the answers), delivered in order;
- resets: `reset_all()` sends a TCP RST on every open connection at once, as a crashed peer or
  a firewall does; `reset_rate` resets that fraction of new connections as they arrive;
- down: `down()` closes the listening socket, so connecting is refused (and resets what is
  open) until `up()`;
- bandwidth: at most so many bytes a second per direction of each connection.

It runs in the caller's event loop (`await FaultProxy(...).start()`), or as a process of its
own with a small HTTP control endpoint (`python -m common.testing.fault_proxy`, see
`ControlServer`), for a load generator that is not written in asyncio.
"""

import argparse
import asyncio
import contextlib
import json
import random
import signal
import socket
import struct
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

CHUNK = 65536


@dataclass
class Latency:
    """A delay added to every chunk in one direction: `fixed_ms` plus up to `jitter_ms`."""

    fixed_ms: float = 0.0
    jitter_ms: float = 0.0

    def seconds(self) -> float:
        jitter = random.uniform(0, self.jitter_ms) if self.jitter_ms else 0.0  # noqa: S311 - not crypto
        return (self.fixed_ms + jitter) / 1000


@dataclass
class Faults:
    """What the proxy does to the traffic now; every field may change at run time."""

    upstream: Latency = field(default_factory=Latency)
    downstream: Latency = field(default_factory=Latency)
    # The fraction (0..1) of new connections reset as soon as they are accepted.
    reset_rate: float = 0.0
    # Bytes per second per direction of each connection; 0 is unlimited.
    bandwidth: int = 0

    @property
    def calm(self) -> bool:
        return self == Faults()


@dataclass
class ProxyStats:
    accepted: int = 0
    refused: int = 0  # connections refused because the target was unreachable
    reset: int = 0  # connections this proxy reset (reset_all, reset_rate, down)
    bytes_upstream: int = 0
    bytes_downstream: int = 0


@dataclass
class Link:
    """One proxied connection: the client's side and the target's side."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST rather than a FIN: what a client sees when its peer crashes."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """Listens on 127.0.0.1:`port` (a free one when 0) and forwards to `target`."""

    def __init__(
        self, target_host: str, target_port: int, *, port: int = 0, name: str = ""
    ) -> None:
        self.target = (target_host, target_port)
        self.name = name or f"{target_host}:{target_port}"
        self.port = port
        self.faults = Faults()
        self.stats = ProxyStats()
        self.links: list[Link] = []
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def is_up(self) -> bool:
        return self._server is not None

    async def start(self) -> Self:
        await self.up()
        return self

    async def stop(self) -> None:
        await self.down(reset=False)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # The switches.

    def set_latency(
        self,
        upstream_ms: float = 0.0,
        downstream_ms: float = 0.0,
        jitter_ms: float = 0.0,
    ) -> None:
        """Delay each direction by its fixed time plus up to `jitter_ms`; zeros switch it off."""
        self.faults.upstream = Latency(upstream_ms, jitter_ms)
        self.faults.downstream = Latency(downstream_ms, jitter_ms)

    def set_reset_rate(self, fraction: float) -> None:
        """Reset this fraction of the connections accepted from now on."""
        if not 0 <= fraction <= 1:
            raise ValueError("reset_rate is a fraction between 0 and 1")
        self.faults.reset_rate = fraction

    def set_bandwidth(self, bytes_per_second: int) -> None:
        self.faults.bandwidth = max(0, bytes_per_second)

    def clear(self) -> None:
        """No latency, no resets, no bandwidth limit (a down proxy stays down: see `up`)."""
        self.faults = Faults()

    async def reset_all(self) -> int:
        """Reset every open connection, both sides; how many there were."""
        links, self.links = self.links, []
        for link in links:
            _abort(link.client)
            _abort(link.server)
            for task in link.tasks:
                task.cancel()
        for link in links:
            for task in link.tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self.stats.reset += len(links)
        return len(links)

    async def close_all(self) -> None:
        """Close every open connection with a FIN both ways, as a server shutting down does."""
        links, self.links = self.links, []
        for link in links:
            for task in link.tasks:
                task.cancel()
            link.client.close()
            link.server.close()
        for link in links:
            for task in link.tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def down(self, reset: bool = True) -> None:
        """Stop listening (new connections are refused) and end what is open: reset by
        default, closed gracefully when `reset` is false."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        if reset:
            await self.reset_all()
        else:
            await self.close_all()
        if server is not None:
            await server.wait_closed()

    async def up(self) -> None:
        """Listen again, on the same port."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "listen": self.address,
            "target": f"{self.target[0]}:{self.target[1]}",
            "up": self.is_up,
            "faults": asdict(self.faults),
            "stats": asdict(self.stats),
            "open": len(self.links),
        }

    def apply(self, settings: dict[str, Any]) -> None:
        """Set faults from a JSON-shaped dict: `upstream_ms`, `downstream_ms`, `jitter_ms`,
        `reset_rate`, `bandwidth`; keys left out keep their values."""
        unknown = set(settings) - {
            "upstream_ms",
            "downstream_ms",
            "jitter_ms",
            "reset_rate",
            "bandwidth",
        }
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        jitter = float(settings.get("jitter_ms", self.faults.upstream.jitter_ms))
        self.set_latency(
            float(settings.get("upstream_ms", self.faults.upstream.fixed_ms)),
            float(settings.get("downstream_ms", self.faults.downstream.fixed_ms)),
            jitter,
        )
        self.set_reset_rate(float(settings.get("reset_rate", self.faults.reset_rate)))
        self.set_bandwidth(int(settings.get("bandwidth", self.faults.bandwidth)))

    # The forwarding.

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.faults.reset_rate and random.random() < self.faults.reset_rate:  # noqa: S311
            self.stats.reset += 1
            _abort(writer)
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self.stats.refused += 1
            _abort(writer)
            return
        self.stats.accepted += 1
        link = Link(writer, server_writer)
        link.tasks = [
            asyncio.create_task(self._pipe(reader, server_writer, link, upstream=True)),
            asyncio.create_task(self._pipe(server_reader, writer, link, upstream=False)),
        ]
        self.links.append(link)

    async def read_chunk(self, reader: asyncio.StreamReader, upstream: bool) -> bytes:
        """The next piece of one direction's stream (b"" at its end). A protocol-aware proxy
        overrides this to see whole messages (common.testing.mysql_proxy)."""
        return await reader.read(CHUNK)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: Link,
        upstream: bool,
    ) -> None:
        # Chunks wait in a queue until their delivery time, so latency delays each byte
        # without slowing the stream down to one chunk per delay.
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        delivery = asyncio.create_task(self._deliver(queue, writer, link, upstream))
        last_due = 0.0
        try:
            while True:
                data = await self.read_chunk(reader, upstream)
                if not data:
                    break
                latency = self.faults.upstream if upstream else self.faults.downstream
                delay = latency.seconds()
                if delay or not queue.empty():
                    last_due = max(last_due, time.monotonic() + delay)
                    queue.put_nowait((last_due, data))
                else:
                    await self._write(writer, data, upstream)
            await queue.join()
            if writer.can_write_eof():
                writer.write_eof()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            # One side broke: the other side learns it the same way, at once.
            self._tear_down(link)
        finally:
            delivery.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await delivery
            self._finish(link)

    async def _deliver(
        self,
        queue: "asyncio.Queue[tuple[float, bytes]]",
        writer: asyncio.StreamWriter,
        link: Link,
        upstream: bool,
    ) -> None:
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                await self._write(writer, data, upstream)
            except (ConnectionError, OSError):
                self._tear_down(link)
                return
            finally:
                queue.task_done()

    async def _write(self, writer: asyncio.StreamWriter, data: bytes, upstream: bool) -> None:
        if self.faults.bandwidth:
            # The time the chunk takes on a link this narrow, before it arrives.
            await asyncio.sleep(len(data) / self.faults.bandwidth)
        writer.write(data)
        await writer.drain()
        if upstream:
            self.stats.bytes_upstream += len(data)
        else:
            self.stats.bytes_downstream += len(data)

    def _tear_down(self, link: Link) -> None:
        _abort(link.client)
        _abort(link.server)
        for task in link.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        if link in self.links:
            self.links.remove(link)

    def _finish(self, link: Link) -> None:
        """One side ended: the other side's half-close was already passed on; once both
        directions are done, close both sockets."""
        if all(task.done() or task is asyncio.current_task() for task in link.tasks):
            link.client.close()
            link.server.close()
            if link in self.links:
                self.links.remove(link)


class ControlServer:
    """A tiny HTTP endpoint switching named proxies, for callers in other processes:

    - `GET /proxies`: every proxy's target, faults and counts;
    - `PUT /proxies/<name>` with a JSON object of `FaultProxy.apply`'s keys;
    - `POST /proxies/<name>/reset`: reset every open connection;
    - `POST /proxies/<name>/down`, `POST /proxies/<name>/up`: refuse connections, or not;
    - `DELETE /proxies/<name>`: clear the faults and bring it up.
    """

    def __init__(self, proxies: dict[str, FaultProxy], port: int = 0) -> None:
        self.proxies = proxies
        self.port = port
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> "ControlServer":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            head = request.decode("latin-1").split("\r\n")
            method, path, _ = head[0].split(" ", 2)
            length = 0
            for line in head[1:]:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            status, answer = await self.handle(method, path, body)
        except (ValueError, json.JSONDecodeError) as error:
            status, answer = 400, {"detail": str(error)}
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        payload = json.dumps(answer).encode()
        writer.write(
            f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
            f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n".encode()
            + payload
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    async def handle(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        parts = [part for part in path.split("/") if part]
        if parts == ["proxies"] and method == "GET":
            return 200, [proxy.describe() for proxy in self.proxies.values()]
        if len(parts) < 2 or parts[0] != "proxies" or parts[1] not in self.proxies:
            return 404, {"detail": f"no such proxy: {path}"}
        proxy = self.proxies[parts[1]]
        action = parts[2] if len(parts) > 2 else ""
        if method == "PUT" and not action:
            settings = json.loads(body or b"{}")
            if not isinstance(settings, dict):
                raise ValueError("the body is a JSON object of fault settings")
            proxy.apply(settings)
        elif method == "DELETE" and not action:
            proxy.clear()
            await proxy.up()
        elif method == "POST" and action == "reset":
            await proxy.reset_all()
        elif method == "POST" and action == "down":
            await proxy.down()
        elif method == "POST" and action == "up":
            await proxy.up()
        elif method != "GET" or action:
            return 405, {"detail": f"{method} {path} is not a control action"}
        return 200, proxy.describe()


def _parse_route(text: str) -> tuple[str, int, str, int]:
    """`NAME=LISTEN_PORT:HOST:PORT` (LISTEN_PORT 0 for a free one)."""
    name, rest = text.split("=", 1)
    listen, host, port = rest.split(":")
    return name, int(listen), host, int(port)


async def _serve_forever(routes: list[str], control_port: int, addresses: str | None) -> None:
    proxies = {}
    for route in routes:
        name, listen, host, port = _parse_route(route)
        proxies[name] = await FaultProxy(host, port, port=listen, name=name).start()
    control = await ControlServer(proxies, control_port).start()
    summary = {"control": control.url, "proxies": {n: p.address for n, p in proxies.items()}}
    if addresses:
        Path(addresses).write_text(json.dumps(summary))  # noqa: ASYNC240 - once, at start-up
    print(json.dumps(summary), flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    await control.stop()
    for proxy in proxies.values():
        await proxy.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--route",
        action="append",
        required=True,
        help="NAME=LISTEN_PORT:TARGET_HOST:TARGET_PORT (LISTEN_PORT 0: a free port); repeatable",
    )
    parser.add_argument("--control-port", type=int, default=0)
    parser.add_argument("--addresses", help="write the control URL and proxies' ports here")
    args = parser.parse_args()
    asyncio.run(_serve_forever(args.route, args.control_port, args.addresses))


if __name__ == "__main__":
    main()
