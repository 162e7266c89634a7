"""The fault proxy against real servers: an echo server on loopback and the test MariaDB."""

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from common.db import create_read_engine
from common.middleware import RetryReadMiddleware
from common.testing.fault_proxy import ControlServer, FaultProxy
from common.testing.servers import MysqlServer


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
async def proxy(echo_port: int) -> AsyncIterator[FaultProxy]:
    async with FaultProxy("127.0.0.1", echo_port, name="echo") as started:
        yield started


async def _round_trip(port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        return await reader.readexactly(len(payload))
    finally:
        writer.close()


async def test_a_calm_proxy_forwards_both_ways(proxy: FaultProxy) -> None:
    payload = bytes(range(256)) * 1000
    assert await _round_trip(proxy.port, payload) == payload
    assert proxy.stats.bytes_upstream == len(payload) == proxy.stats.bytes_downstream


async def test_latency_delays_each_direction(proxy: FaultProxy) -> None:
    start = time.monotonic()
    await _round_trip(proxy.port, b"calm")
    calm = time.monotonic() - start

    proxy.set_latency(upstream_ms=150, downstream_ms=100)
    start = time.monotonic()
    assert await _round_trip(proxy.port, b"slow") == b"slow"
    slow = time.monotonic() - start

    assert slow >= 0.25 > calm


async def test_latency_keeps_the_order_of_a_stream(proxy: FaultProxy) -> None:
    proxy.set_latency(upstream_ms=5, downstream_ms=5, jitter_ms=20)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    pieces = [f"{n:05d}".encode() for n in range(200)]
    for piece in pieces:
        writer.write(piece)
        await writer.drain()
    echoed = await reader.readexactly(sum(map(len, pieces)))
    writer.close()
    assert echoed == b"".join(pieces)


async def test_reset_all_breaks_open_connections_and_new_ones_work(proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"ping")
    assert await reader.readexactly(4) == b"ping"

    assert await proxy.reset_all() == 1

    async def use_it_again() -> None:
        writer.write(b"again")
        await writer.drain()
        await reader.readexactly(5)

    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await use_it_again()
    writer.close()
    assert await _round_trip(proxy.port, b"fresh") == b"fresh"


async def test_a_reset_rate_resets_that_share_of_new_connections(proxy: FaultProxy) -> None:
    proxy.set_reset_rate(1.0)
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await _round_trip(proxy.port, b"x")
    proxy.set_reset_rate(0.5)
    outcomes = []
    for _ in range(40):
        try:
            outcomes.append(await _round_trip(proxy.port, b"x") == b"x")
        except (ConnectionError, asyncio.IncompleteReadError):
            outcomes.append(False)
    assert 0 < sum(outcomes) < 40


async def test_down_refuses_connections_until_up(proxy: FaultProxy) -> None:
    await proxy.down()
    with pytest.raises(ConnectionRefusedError):
        await _round_trip(proxy.port, b"x")
    await proxy.up()
    assert await _round_trip(proxy.port, b"back") == b"back"


async def test_bandwidth_slows_a_large_transfer(proxy: FaultProxy) -> None:
    proxy.set_bandwidth(200_000)
    start = time.monotonic()
    assert await _round_trip(proxy.port, b"x" * 100_000) == b"x" * 100_000
    # 100 kB each way at 200 kB/s: about half a second per direction.
    assert time.monotonic() - start >= 0.4


async def test_the_control_endpoint_switches_a_proxy(proxy: FaultProxy) -> None:
    control = await ControlServer({"echo": proxy}).start()
    try:
        async with httpx.AsyncClient(base_url=control.url) as http:
            changed = await http.put(
                "/proxies/echo", content=json.dumps({"upstream_ms": 40, "reset_rate": 0.25})
            )
            assert changed.status_code == 200
            assert proxy.faults.upstream.fixed_ms == 40
            assert proxy.faults.reset_rate == 0.25
            assert (await http.put("/proxies/echo", content=b'{"nope": 1}')).status_code == 400
            assert (await http.post("/proxies/echo/down")).json()["up"] is False
            assert not proxy.is_up
            assert (await http.delete("/proxies/echo")).json()["up"] is True
            assert proxy.faults.calm
            listed = (await http.get("/proxies")).json()
            assert [entry["name"] for entry in listed] == ["echo"]
            assert (await http.get("/proxies/other")).status_code == 404
    finally:
        await control.stop()


@pytest.fixture
async def mysql_through_proxy(mysql_server: MysqlServer) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(mysql_server.host, mysql_server.port, name="mysql") as started:
        yield started


def _url_through(proxy: FaultProxy, server: MysqlServer) -> str:
    secret = f":{server.password}" if server.password else ""
    return f"mysql+asyncmy://{server.user}{secret}@127.0.0.1:{proxy.port}/"


async def test_a_query_through_the_proxy_and_a_reset_that_kills_it(
    mysql_server: MysqlServer, mysql_through_proxy: FaultProxy
) -> None:
    engine = create_read_engine(_url_through(mysql_through_proxy, mysql_server), pool_size=1)
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT 41 + 1"))).scalar() == 42
            mysql_through_proxy.set_latency(downstream_ms=300)
            query = asyncio.create_task(connection.execute(text("SELECT 1")))
            await asyncio.sleep(0.1)
            assert await mysql_through_proxy.reset_all() == 1
            with pytest.raises(DBAPIError) as lost:
                await query
            assert lost.value.connection_invalidated
    finally:
        await engine.dispose()


async def test_a_services_read_survives_a_reset_by_its_retry(
    mysql_server: MysqlServer, mysql_through_proxy: FaultProxy
) -> None:
    """common.middleware.RetryReadMiddleware runs a read again on a new connection when the
    pooled one it was given was reset."""
    engine = create_read_engine(_url_through(mysql_through_proxy, mysql_server), pool_size=1)
    app = FastAPI()
    app.add_middleware(RetryReadMiddleware)

    @app.get("/answer")
    async def answer() -> dict[str, int]:
        async with engine.connect() as connection:
            return {"answer": (await connection.execute(text("SELECT 42"))).scalar_one()}

    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            assert (await client.get("/answer")).json() == {"answer": 42}
            opened = mysql_through_proxy.stats.accepted
            assert await mysql_through_proxy.reset_all() == 1
            retried = await client.get("/answer")
            assert retried.status_code == 200
            assert retried.json() == {"answer": 42}
            assert mysql_through_proxy.stats.accepted == opened + 1
    finally:
        await engine.dispose()
