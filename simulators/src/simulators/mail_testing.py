"""Test helpers for the email simulators: each started as a real process on a free port,
with a typed client for its control API (as simulators.testing does for FakePay)."""

import http.client
import json
import time
from typing import Any
from urllib.parse import urlsplit

from simulators.process import SimulatorProcess, free_port


def _call(base_url: str, method: str, path: str, body: Any = None, timeout: float = 15) -> Any:
    """A control request; a read is tried again on a dropped connection (the drill's last
    look at the counts met a reset on a loaded machine, and a read changes nothing)."""
    for _ in range(2):
        try:
            return _call_once(base_url, method, path, body, timeout)
        except ConnectionError:
            if method != "GET":
                raise
            time.sleep(0.5)
    return _call_once(base_url, method, path, body, timeout)


def _call_once(base_url: str, method: str, path: str, body: Any, timeout: float) -> Any:
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port, timeout=timeout
    )
    try:
        payload = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json"} if payload else {}
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path}: {response.status} {data!r}")
    return json.loads(data) if data else None


class MailProvidersServer(SimulatorProcess):
    """SendGrid, Mailgun and SparkPost in one process (simulators.mail_providers)."""

    module = "simulators.mail_providers"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def control(self, method: str, path: str, body: Any = None) -> Any:
        return _call(self.url, method, f"/_control{path}", body)

    def keys(self) -> dict[str, str]:
        keys: dict[str, str] = self.control("GET", "/keys")
        return keys

    def counts(self) -> dict[str, dict[str, int]]:
        """Accepted messages per provider and send id."""
        counts: dict[str, dict[str, int]] = self.control("GET", "/counts")
        return counts

    def messages(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = self.control("GET", "/messages")
        return messages

    def fault(
        self,
        provider: str,
        mode: str,
        *,
        times: int | None = None,
        delay: float | None = None,
        recipient: str | None = None,
    ) -> str:
        spec = {"provider": provider, "mode": mode, "times": times, "delay": delay}
        spec["recipient"] = recipient
        body = {key: value for key, value in spec.items() if value is not None}
        return str(self.control("POST", "/faults", body)["id"])

    def clear_faults(self, provider: str | None = None) -> None:
        self.control("DELETE", "/faults" + (f"?provider={provider}" if provider else ""))

    def clear(self) -> None:
        self.clear_faults()
        self.control("DELETE", "/messages")
        self.report_to(None)

    def report_to(self, webhooks_url: str | None, topic_arn: str | None = None) -> None:
        """Post a signed webhook to {webhooks_url}/{provider} for each accepted message."""
        body: dict[str, Any] = {"url": webhooks_url}
        if topic_arn:
            body["topic_arn"] = topic_arn
        self.control("PUT", "/webhook-target", body)

    def webhook(self, **spec: Any) -> dict[str, Any]:
        """Post one signed (or forged, `forge=`) webhook; the service's answer comes back."""
        answer: dict[str, Any] = self.control("POST", "/webhooks", spec)
        return answer

    def replay(self, url: str, body: str, headers: dict[str, str]) -> dict[str, Any]:
        answer: dict[str, Any] = self.control(
            "POST", "/replay", {"url": url, "body": body, "headers": headers}
        )
        return answer


class SmtpSinkServer(SimulatorProcess):
    """The SMTP sink (simulators.smtp_sink) with its HTTP control port."""

    module = "simulators.smtp_sink"

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        super().__init__(host, port)
        self.control_port = free_port()

    def arguments(self) -> list[str]:
        return [*super().arguments(), "--control-port", str(self.control_port)]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = _call(
            f"http://{self.host}:{self.control_port}", "GET", "/_control/counts"
        )
        return counts
