"""The gateway in front of several replicas of a service: which requests move on to another
replica when one is down or dies holding a request. A real nginx from the deployment template,
in front of tiny upstreams: one that answers, one that takes a request and closes the
connection without an answer (a replica killed while working on it), and an address where
nothing listens (a replica that is gone)."""

import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.testing.gateway import GatewayConfig, start_gateway
from common.testing.servers import free_port


@dataclass
class Seen:
    """The request ids an upstream received, in order."""

    request_ids: list[str] = field(default_factory=list)


def answering(seen: Seen) -> type[BaseHTTPRequestHandler]:
    class Answer(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            seen.request_ids.append(self.headers["X-Request-ID"])
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_GET = do_POST = do_PATCH = _answer

        def log_message(self, *args: object) -> None:
            pass

    return Answer


def dropping(seen: Seen) -> type[BaseHTTPRequestHandler]:
    class Drop(BaseHTTPRequestHandler):
        """Reads the whole request, then closes the connection without a word."""

        protocol_version = "HTTP/1.1"

        def _drop(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            seen.request_ids.append(self.headers["X-Request-ID"])
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True

        do_GET = do_POST = do_PATCH = _drop

        def log_message(self, *args: object) -> None:
            pass

    return Drop


@pytest.fixture
def upstream() -> Iterator[Any]:
    """Starts a tiny upstream with the given handler; its `host:port`."""
    servers: list[ThreadingHTTPServer] = []

    def start(handler: type[BaseHTTPRequestHandler]) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Any]:
    """Starts a gateway whose invoice upstream is the given replicas, in that order."""
    processes = []

    def start(*replicas: str) -> str:
        config = GatewayConfig(
            port=free_port(), user_upstream=replicas[0], invoice_upstream=replicas
        )
        processes.append(start_gateway(config, tmp_path / f"gateway-{len(processes)}"))
        return f"http://127.0.0.1:{config.port}"

    yield start
    for process in processes:
        process.terminate()
        process.wait(10)


def nothing_listens() -> str:
    return f"127.0.0.1:{free_port()}"


def send(gateway: str, method: str, **headers: str) -> tuple[str, httpx.Response]:
    request_id = uuid.uuid4().hex
    response = httpx.request(
        method,
        f"{gateway}/api/invoices",
        headers={"X-Request-ID": request_id, **headers},
        json={} if method == "POST" else None,
        timeout=15,
    )
    return request_id, response


def test_a_replica_that_is_gone_costs_no_request_of_any_method(upstream: Any, gateway: Any) -> None:
    seen = Seen()
    base = gateway(nothing_listens(), upstream(answering(seen)))

    answers = [send(base, method) for method in ("POST", "GET", "POST", "PATCH", "POST", "GET")]

    # A refused connection carried nothing to the service, so even a POST moves on.
    assert [response.status_code for _, response in answers] == [200] * 6
    assert seen.request_ids == [request_id for request_id, _ in answers]


def test_a_read_held_by_a_dying_replica_is_answered_by_the_next(
    upstream: Any, gateway: Any
) -> None:
    dropped, answered = Seen(), Seen()
    # nginx's round robin gives the first request to the first server of the list.
    base = gateway(upstream(dropping(dropped)), upstream(answering(answered)))

    request_id, response = send(base, "GET")

    assert response.status_code == 200
    assert dropped.request_ids == [request_id]
    assert answered.request_ids == [request_id]


@pytest.mark.parametrize("headers", [{}, {"Idempotency-Key": "topup-1"}])
def test_a_payment_held_by_a_dying_replica_is_not_sent_again(
    upstream: Any, gateway: Any, headers: dict[str, str]
) -> None:
    """A POST may have charged a card before its replica died: the gateway never sends it to a
    second replica, Idempotency-Key or not; the client retries it with the same key."""
    dropped, answered = Seen(), Seen()
    base = gateway(upstream(dropping(dropped)), upstream(answering(answered)))

    request_id, response = send(base, "POST", **headers)

    assert dropped.request_ids == [request_id]
    assert answered.request_ids == []
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "5"
    assert response.json()["status"] == 503
