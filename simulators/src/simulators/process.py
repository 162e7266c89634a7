"""A simulator run as a real process for tests: what FakePay, the billing platform and the
email providers' simulators share."""

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SimulatorProcess:
    """A simulator module run as its own process on a free loopback port, for tests.

    The process writes its log to a file rather than a pipe: a pipe nobody reads fills up and
    stalls the server. Tests read it back with `log()`. Subclasses name the module and may add
    command-line arguments.
    """

    module = ""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        descriptor, name = tempfile.mkstemp(
            prefix=f"{self.module.rsplit('.', 1)[-1]}-", suffix=".log"
        )
        os.close(descriptor)
        self.log_path = Path(name)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def arguments(self) -> list[str]:
        return ["--host", self.host, "--port", str(self.port)]

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout: float = 30.0) -> Self:
        command = [sys.executable, "-m", self.module, *self.arguments()]
        with self.log_path.open("ab") as log:
            # Our own module under this interpreter; nothing here comes from outside.
            self.process = subprocess.Popen(  # noqa: S603
                command, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    pass
                # Still running: the listener is ours, not another process holding the port.
                if self.process.poll() is None:
                    return self
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                message = f"{self.module} did not start on {self.host}:{self.port}:\n{self.log()}"
                self.stop()
                raise RuntimeError(message)
            time.sleep(0.05)

    def stop(self) -> None:
        """Stops the process and deletes its log."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
