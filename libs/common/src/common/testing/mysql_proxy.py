"""A loopback TCP proxy in front of MySQL that counts what clients send and can cut them off.

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
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import httpx
from fastapi import FastAPI
from pydantic import SecretStr

from common.config import BaseServiceSettings

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


@dataclass
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class MysqlProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.commands: list[Command] = []
        self.connections_opened = 0
        self._links: list[_Link] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> "MysqlProxy":
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.drop_connections()
        if self._server is not None:
            await self._server.wait_closed()

    def url(self, database: str, user: str = "root", password: str = "") -> str:
        secret = f":{password}" if password else ""
        return f"mysql+asyncmy://{user}{secret}@127.0.0.1:{self.port}/{database}"

    def upstream_ports(self) -> list[int]:
        """The local ports of the proxy's connections to the server: the `HOST` column of
        the server's process list names them, so a test can kill exactly these."""
        return [link.server.get_extra_info("sockname")[1] for link in self._links]

    def queries(self) -> list[str]:
        return [c.describe() for c in self.commands]

    async def drop_connections(self) -> None:
        """Close every connection, both ways, as a server going away does."""
        links, self._links = self._links, []
        for link in links:
            for task in link.tasks:
                task.cancel()
            for writer in (link.client, link.server):
                writer.close()
        for link in links:
            for task in link.tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        self.connections_opened += 1
        link = _Link(writer, server_writer)
        link.tasks = [
            asyncio.create_task(self._client_to_server(reader, server_writer, link)),
            asyncio.create_task(self._pipe(server_reader, writer, link)),
        ]
        self._links.append(link)

    async def _client_to_server(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        try:
            while True:
                header = await reader.readexactly(4)
                payload = await reader.readexactly(int.from_bytes(header[:3], "little"))
                if header[3] == 0 and payload:
                    text = payload[1:].decode(errors="replace") if payload[0] == COM_QUERY else ""
                    self.commands.append(Command(payload[0], text))
                writer.write(header + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._close(link)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link
    ) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._close(link)

    def _close(self, link: _Link) -> None:
        link.client.close()
        link.server.close()
        if link in self._links:
            self._links.remove(link)


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
