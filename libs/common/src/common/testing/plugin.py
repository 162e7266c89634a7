"""Pytest fixtures every service's tests reuse: real MySQL, a real Kafka-protocol broker,
throwaway schemas, and a token issuer whose JWKS the services fetch over HTTP."""

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncmy
import pytest
from aiokafka import AIOKafkaConsumer

from common.events import CloudEvent
from common.testing.identity import TestIssuer
from common.testing.mysql_proxy import MysqlProxy
from common.testing.servers import MysqlServer, allow_connections, find_kafka, find_mysql


def stop_all(stack: list[Any]) -> None:
    """Stops what a fixture started (processes, containers), the last first."""
    for item in reversed(stack):
        if isinstance(item, subprocess.Popen):
            item.terminate()
            item.wait(timeout=10)
        else:
            item.stop()


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[MysqlServer]:
    stack: list[Any] = []
    try:
        server = find_mysql(stack)
        allow_connections(server)
        yield server
    finally:
        stop_all(stack)


@pytest.fixture
async def mysql_proxy(mysql_server: MysqlServer) -> AsyncIterator[MysqlProxy]:
    """A counting, cuttable proxy in front of the test MySQL (common.testing.mysql_proxy)."""
    proxy = await MysqlProxy(mysql_server.host, mysql_server.port).start()
    yield proxy
    await proxy.stop()


@contextlib.contextmanager
def broker_of_its_own() -> Iterator[str]:
    """Bootstrap servers of a new broker (or the named one, see `find_kafka`), stopped after."""
    stack: list[Any] = []
    try:
        yield find_kafka(stack)
    finally:
        stop_all(stack)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    with broker_of_its_own() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def test_issuer() -> Iterator[TestIssuer]:
    issuer = TestIssuer().start()
    yield issuer
    issuer.stop()


async def _admin_execute(server: MysqlServer, statement: str) -> None:
    connection = await asyncmy.connect(
        host=server.host, port=server.port, user=server.user, password=server.password
    )
    try:
        async with connection.cursor() as cursor:
            await cursor.execute(statement)
    finally:
        connection.close()


async def create_database(server: MysqlServer, prefix: str) -> str:
    """A new empty schema named `<prefix>_<random>`; its async URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    await _admin_execute(
        server, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    )
    return server.url(name)


async def drop_database(server: MysqlServer, name: str) -> None:
    await _admin_execute(server, f"DROP DATABASE IF EXISTS `{name}`")


@contextlib.asynccontextmanager
async def temporary_database(server: MysqlServer, prefix: str) -> AsyncIterator[str]:
    """A new empty schema for one test session, dropped afterwards; yields its async URL."""
    url = await create_database(server, prefix)
    try:
        yield url
    finally:
        await drop_database(server, url.rsplit("/", 1)[1])


def migrate_schema(alembic_ini: Path, env_prefix: str, database_url: str) -> None:
    """Run a service's migrations the way deployment does: alembic in its own process, the
    schema named by `<PREFIX>_DATABASE_URL`."""
    subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(alembic_ini), "upgrade", "head"],
        check=True,
        env={**os.environ, f"{env_prefix}_DATABASE_URL": database_url},
        capture_output=True,
    )


async def next_event(
    consumer: AIOKafkaConsumer, predicate: Any, within_seconds: float = 20
) -> CloudEvent:
    """The first event on the consumer's topics that matches, or a failed test."""
    async with asyncio.timeout(within_seconds):
        async for record in consumer:
            event = CloudEvent.model_validate_json(record.value)
            if predicate(event):
                return event
    raise AssertionError("the consumer stopped before a matching event arrived")
