"""A loopback TCP proxy in front of MySQL that counts what clients send and can cut them off
(a `common.testing.fault_proxy.FaultProxy`, so latency and resets too).

Tests point a service's database URL at it to see the round trips a request really costs
(every command a client sends: a query, a ping, a COMMIT, a ROLLBACK), and to take the
database away from under a running service: `drop_connections()` closes every connection at
once, which is what a client sees when the server restarts, without restarting a server
other tests use.

The MySQL protocol frames every message as a 4-byte header (3-byte length, 1-byte sequence
id) and a payload; a client's message with sequence id 0 starts a command, and its first
payload byte says which (3 is COM_QUERY, 14 is COM_PING). The sign-in exchange of a new
connection has sequence ids from 1 and is not counted.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import httpx
from fastapi import FastAPI
from pydantic import SecretStr

from common.config import BaseServiceSettings
from common.testing.fault_proxy import FaultProxy

SettingsT = TypeVar("SettingsT", bound=BaseServiceSettings)

COM_QUERY = 3
COM_PING = 14


@dataclass(frozen=True)
class Command:
    kind: int
    text: str  # the query of a COM_QUERY, "" otherwise

    def describe(self) -> str:
        return (
            self.text
            if self.kind == COM_QUERY
            else {COM_PING: "PING"}.get(self.kind, f"command {self.kind}")
        )


class MysqlProxy(FaultProxy):
    """A `FaultProxy` in front of MySQL that also records every command clients send."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        super().__init__(upstream_host, upstream_port, name="mysql")
        self.commands: list[Command] = []

    @property
    def connections_opened(self) -> int:
        return self.stats.accepted

    def url(self, database: str, user: str = "root", password: str = "") -> str:
        secret = f":{password}" if password else ""
        return f"mysql+asyncmy://{user}{secret}@127.0.0.1:{self.port}/{database}"

    def upstream_ports(self) -> list[int]:
        """The local ports of the proxy's connections to the server: the `HOST` column of
        the server's process list names them, so a test can kill exactly these."""
        return [link.server.get_extra_info("sockname")[1] for link in self.links]

    def queries(self) -> list[str]:
        return [c.describe() for c in self.commands]

    async def drop_connections(self) -> None:
        """Close every connection, both ways, as a server going away does."""
        await self.close_all()

    async def read_chunk(self, reader: asyncio.StreamReader, upstream: bool) -> bytes:
        """A client's messages one at a time, each command recorded; answers as they come."""
        if not upstream:
            return await super().read_chunk(reader, upstream)
        try:
            header = await reader.readexactly(4)
        except asyncio.IncompleteReadError as end:
            if end.partial:
                raise
            return b""
        payload = await reader.readexactly(int.from_bytes(header[:3], "little"))
        if header[3] == 0 and payload:
            text = payload[1:].decode(errors="replace") if payload[0] == COM_QUERY else ""
            self.commands.append(Command(payload[0], text))
        return header + payload


def through(proxy: MysqlProxy, settings: SettingsT, database_url: str) -> SettingsT:
    """The same service settings, with the service's schema reached through the proxy."""
    database = database_url.rsplit("/", 1)[1]
    return settings.model_copy(update={"database_url": SecretStr(proxy.url(database))})


@asynccontextmanager
async def app_client(application: FastAPI, base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app in this process, with the app's start-up and shut-down around it."""
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url=base_url) as api,
    ):
        yield api
