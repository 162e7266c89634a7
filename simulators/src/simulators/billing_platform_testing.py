"""Test helpers for the billing platform simulator: the simulator as a real separate process
on a free port, and a client for its `/_control` API (accounts, data changes, faults)."""

from typing import Any

import httpx

from simulators.billing_platform import FaultMode
from simulators.process import SimulatorProcess


class BillingPlatformControl:
    """A blocking client of `/_control`; each call is a local in-memory change."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.http = httpx.Client(base_url=f"{base_url}/_control", timeout=timeout)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, path, json=body)
        if response.status_code >= 300:
            raise RuntimeError(f"billing platform {method} {path}: {response.status_code}")
        return response.json() if response.content else None

    def create_account(
        self, *, name: str = "Owner", clients: int = 3, invoices: int = 10
    ) -> tuple[str, str]:
        """A new account with generated clients and invoices; its id and API key."""
        created = self._call(
            "POST", "/accounts", {"name": name, "clients": clients, "invoices": invoices}
        )
        return str(created["id"]), str(created["api_key"])

    def invoices(self, account_id: str) -> list[dict[str, Any]]:
        """Every invoice the account holds now, in creation order."""
        return list(self._call("GET", f"/accounts/{account_id}/invoices"))

    def clients(self, account_id: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/accounts/{account_id}/clients"))

    def add_invoice(self, account_id: str, **fields: Any) -> dict[str, Any]:
        return dict(self._call("POST", f"/accounts/{account_id}/invoices", fields))

    def set_status(self, account_id: str, invoice_id: str, status: str) -> None:
        self._call(
            "POST", f"/accounts/{account_id}/invoices/{invoice_id}/status", {"status": status}
        )

    def remove_invoice(self, account_id: str, invoice_id: str) -> None:
        self._call("DELETE", f"/accounts/{account_id}/invoices/{invoice_id}")

    def fault(
        self,
        mode: FaultMode,
        *,
        account_id: str | None = None,
        path: str | None = None,
        seconds: float | None = None,
        times: int | None = None,
        delay: float | None = None,
        retry_after: int | None = None,
    ) -> str:
        """Adds a fault (docs/billing_api.md, "Simulator") and returns its id."""
        spec = {
            "mode": mode,
            "account_id": account_id,
            "path": path,
            "seconds": seconds,
            "times": times,
            "delay": delay,
            "retry_after": retry_after,
        }
        body = {key: value for key, value in spec.items() if value is not None}
        return str(self._call("POST", "/faults", body)["id"])

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def requests(self) -> int:
        """How many API requests the platform has received."""
        return int(self._call("GET", "/stats")["requests"])


class BillingPlatformServer(SimulatorProcess):
    """The simulator in its own process on a free port, stopped when the block ends."""

    module = "simulators.billing_platform"

    def __init__(self, port: int | None = None, *, rate_limit: int = 0) -> None:
        super().__init__(port=port)
        self.rate_limit = rate_limit

    def arguments(self) -> list[str]:
        return [
            *super().arguments(),
            "--rate-limit",
            str(self.rate_limit),
            "--log-level",
            "warning",
        ]

    def control_client(self) -> BillingPlatformControl:
        return BillingPlatformControl(self.base_url)
