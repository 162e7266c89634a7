"""Test helpers: FakePay started as a real separate process, and a typed client for its
control API. The payment service's tests use them to break the provider on purpose and to
count what it really charged."""

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from pydantic import TypeAdapter

from simulators.fakepay import FaultMode, LedgerEntry

_ledger_adapter = TypeAdapter(list[LedgerEntry])


class FakePayControl:
    """A client for FakePay's `/_control` API. Blocking, but each call is a local in-memory
    look-up of milliseconds, so it is fine inside async tests too."""

    def __init__(self, control_url: str, timeout: float = 5.0) -> None:
        parts = urlsplit(control_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = parts.path.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            payload = None if body is None else json.dumps(body)
            headers = {"Content-Type": "application/json"} if payload else {}
            connection.request(method, self.path + path, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        if response.status >= 300:
            raise RuntimeError(f"FakePay {method} {path}: {response.status} {data!r}")
        return response.status, data

    def ledger(self, transaction_id: str | None = None) -> list[LedgerEntry]:
        """Every accepted charge in order, duplicates included; or only one transaction's."""
        entries = _ledger_adapter.validate_json(self._call("GET", "/ledger")[1])
        if transaction_id is None:
            return entries
        return [entry for entry in entries if entry.transaction_id == transaction_id]

    def fault(
        self,
        mode: FaultMode,
        *,
        card_last4: str | None = None,
        transaction_id: str | None = None,
        seconds: float | None = None,
        delay: float | None = None,
        times: int | None = None,
        code: str | None = None,
    ) -> str:
        """Adds a fault (see docs/fakepay.md) and returns its id."""
        spec = {
            "mode": mode,
            "card_last4": card_last4,
            "transaction_id": transaction_id,
            "seconds": seconds,
            "delay": delay,
            "times": times,
            "code": code,
        }
        body = {key: value for key, value in spec.items() if value is not None}
        return str(json.loads(self._call("POST", "/faults", body)[1])["id"])

    def behave(self, latency_ms: float = 0, decline_rate: float = 0, error_rate: float = 0) -> None:
        """Every vaulted-card charge waits latency_ms and fails at random at these rates."""
        body = {"latency_ms": latency_ms, "decline_rate": decline_rate, "error_rate": error_rate}
        self._call("PUT", "/behaviour", body)

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def clear_ledger(self) -> None:
        self._call("DELETE", "/ledger")

    def clear(self) -> None:
        """Forgets all faults and every recorded charge: a clean provider for the next test."""
        self.clear_faults()
        self.clear_ledger()
        self.behave()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakePayServer:
    """FakePay in its own process on a free port, for tests.

    with FakePayServer() as fakepay:
        settings.fakepay_url = fakepay.url
        fakepay.control_client().fault("decline", card_last4="5678")
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        # The process writes its log to a file rather than a pipe: a pipe nobody reads fills
        # up and stalls the server. Tests can read it back with `log()`.
        descriptor, name = tempfile.mkstemp(prefix="fakepay-", suffix=".log")
        os.close(descriptor)
        self.log_path = Path(name)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """What the payment service takes as FAKEPAY_URL."""
        return f"{self.base_url}/fakepay"

    @property
    def control(self) -> str:
        return f"{self.base_url}/_control"

    def control_client(self) -> FakePayControl:
        return FakePayControl(self.control)

    def log(self) -> str:
        """Everything the process has logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout: float = 20.0) -> "FakePayServer":
        command = [sys.executable, "-m", "simulators.fakepay"]
        command += ["--host", self.host, "--port", str(self.port)]
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
                message = f"FakePay did not start on {self.base_url}:\n{self.log()}"
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

    def __enter__(self) -> "FakePayServer":
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
