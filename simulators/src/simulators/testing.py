"""Test helpers: FakePay started as a real separate process, and a typed client for its
control API. The payment service's tests use them to break the provider on purpose and to
count what it really charged."""

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

from pydantic import TypeAdapter

from simulators.fakepay import FaultMode, LedgerEntry
from simulators.process import SimulatorProcess

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


class FakePayServer(SimulatorProcess):
    """FakePay in its own process on a free port, for tests.

    with FakePayServer() as fakepay:
        settings.fakepay_url = fakepay.url
        fakepay.control_client().fault("decline", card_last4="5678")
    """

    module = "simulators.fakepay"

    @property
    def url(self) -> str:
        """What the payment service takes as FAKEPAY_URL."""
        return f"{self.base_url}/fakepay"

    @property
    def control(self) -> str:
        return f"{self.base_url}/_control"

    def control_client(self) -> FakePayControl:
        return FakePayControl(self.control)
