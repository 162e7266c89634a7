"""The gateway's own duties that need no service behind it: who the client is, CORS, and the
per-token and public budgets. A real nginx from the deployment template, in front of a tiny
upstream that answers every request with the headers it received."""

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from common.testing.gateway import GatewayConfig, start_gateway
from common.testing.servers import free_port

ALLOWED = "https://app.example.com"
REFUSED = "https://evil.example.com"


class Echo(BaseHTTPRequestHandler):
    """Answers 200 with the request's headers and its body's length as JSON; counts what
    reached it."""

    protocol_version = "HTTP/1.1"
    seen: list[str] = []

    def _answer(self) -> None:
        Echo.seen.append(f"{self.command} {self.path}")
        received = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = {name.lower(): value for name, value in self.headers.items()}
        body = json.dumps({**answer, "received-bytes": len(received)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_OPTIONS = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def echo() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def run_gateway(config: GatewayConfig, run_dir: Path) -> Iterator[tuple[str, Path]]:
    process = start_gateway(config, run_dir)
    try:
        yield f"http://127.0.0.1:{config.port}", run_dir
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def plain(echo: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The defaults: no proxy trusted, no other origin allowed."""
    config = GatewayConfig(
        port=free_port(), user_upstream=echo, invoice_upstream=echo, payment_upstream=echo
    )
    yield from run_gateway(config, tmp_path_factory.mktemp("gateway-plain"))


@pytest.fixture(scope="module")
def behind_proxy(echo: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """127.0.0.1 (the tests) trusted as a load balancer; one origin allowed; tight budgets."""
    config = GatewayConfig(
        port=free_port(),
        user_upstream=echo,
        invoice_upstream=echo,
        payment_upstream=echo,
        trusted_proxies=("127.0.0.1",),
        cors_origins=(ALLOWED,),
        api_rate="1000r/s",
        api_burst=1000,
        user_rate="1r/m",
        user_burst=2,
        public_rate="1r/m",
        public_burst=2,
    )
    yield from run_gateway(config, tmp_path_factory.mktemp("gateway-proxied"))


def logged_clients(run_dir: Path, request_id: str) -> list[str]:
    """The client addresses the access log shows for a request. nginx writes the line after
    the answer has gone out, so a test that reads at once may be a moment early: wait a
    little for it."""
    deadline = time.monotonic() + 5
    while True:
        entries = map(json.loads, (run_dir / "access.log").read_text().splitlines())
        found = [entry["client"] for entry in entries if entry["request_id"] == request_id]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def bearer(claims: str) -> dict[str, str]:
    return {"Authorization": f"Bearer eyJhbGciOiJSUzI1NiJ9.{claims}.c2lnbmF0dXJl"}


async def test_a_forwarded_for_from_an_untrusted_peer_changes_nothing(
    plain: tuple[str, Path],
) -> None:
    url, run_dir = plain
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.get(
            "/api/invoices", headers={"X-Forwarded-For": "203.0.113.7", "X-Request-ID": "xff-1"}
        )

    assert response.status_code == 200
    assert logged_clients(run_dir, "xff-1") == ["127.0.0.1"]
    # The services get the gateway's address for the client, not what the client wrote.
    assert response.json()["x-forwarded-for"] == "127.0.0.1"


async def test_a_forwarded_for_from_a_trusted_proxy_names_the_client(
    behind_proxy: tuple[str, Path],
) -> None:
    url, run_dir = behind_proxy
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.get(
            "/api/invoices",
            # A client's own claim first, then what the load balancer saw: the last untrusted
            # address is the client.
            headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.7", "X-Request-ID": "xff-2"},
        )

    assert response.status_code == 200
    assert logged_clients(run_dir, "xff-2") == ["203.0.113.7"]
    assert response.json()["x-forwarded-for"] == "203.0.113.7"


async def test_an_allowed_origin_may_read_answers_and_a_refused_one_may_not(
    behind_proxy: tuple[str, Path],
) -> None:
    url, _ = behind_proxy
    async with httpx.AsyncClient(base_url=url) as client:
        allowed = await client.get("/gateway/health", headers={"Origin": ALLOWED})
        refused = await client.get("/gateway/health", headers={"Origin": REFUSED})

    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert allowed.headers["vary"] == "Origin"
    assert "access-control-allow-methods" not in allowed.headers
    assert not [name for name in refused.headers if name.startswith("access-control-")]


async def test_no_other_origin_is_allowed_by_default(plain: tuple[str, Path]) -> None:
    url, _ = plain
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/gateway/health", headers={"Origin": ALLOWED})

    assert not [name for name in response.headers if name.startswith("access-control-")]


async def test_a_preflight_is_answered_by_the_gateway(behind_proxy: tuple[str, Path]) -> None:
    url, _ = behind_proxy
    Echo.seen.clear()
    preflight = {"Access-Control-Request-Method": "POST"}
    async with httpx.AsyncClient(base_url=url) as client:
        allowed = await client.options("/api/invoices", headers={"Origin": ALLOWED, **preflight})
        refused = await client.options("/api/invoices", headers={"Origin": REFUSED, **preflight})

    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "Authorization" in allowed.headers["access-control-allow-headers"]
    assert refused.status_code == 204
    assert not [name for name in refused.headers if name.startswith("access-control-")]
    assert Echo.seen == [], "no preflight reaches a service"


async def test_each_token_has_its_own_budget_on_one_address(
    behind_proxy: tuple[str, Path],
) -> None:
    url, _ = behind_proxy
    async with httpx.AsyncClient(base_url=url) as client:
        first = await asyncio.gather(
            *(client.get("/api/invoices", headers=bearer("YWxpY2U")) for _ in range(6))
        )
        second = await client.get("/api/invoices", headers=bearer("Ym9i"))
        anonymous = await client.get("/api/invoices")

    statuses = sorted(response.status_code for response in first)
    assert statuses == [200, 200, 200, 429, 429, 429], "a burst of 2 on top of the first"
    assert second.status_code == 200, "another token from the same address is not held back"
    assert anonymous.status_code == 200, "no token, no per-token count"


async def test_the_keys_and_the_health_check_have_their_own_budget(
    behind_proxy: tuple[str, Path],
) -> None:
    url, _ = behind_proxy
    async with httpx.AsyncClient(base_url=url) as client:
        public = await asyncio.gather(
            *(client.get(path) for path in ["/.well-known/jwks.json", "/health-check"] * 4)
        )
        api = await client.get("/api/invoices", headers=bearer("Y2Fyb2w"))

    statuses = sorted(response.status_code for response in public)
    assert statuses == [200, 200, 200] + [429] * 5
    assert api.status_code == 200, "a flood of them leaves the API its own budget"


async def test_the_longest_query_a_document_allows_reaches_the_service(
    plain: tuple[str, Path],
) -> None:
    """A 1,024-character cursor of 4-byte characters is 12 KiB percent-encoded: more than
    nginx's default buffer, which answered its own HTML 414 instead of the service's 422."""
    url, _ = plain
    query = {"client_name": "\U0001f600" * 200, "cursor": "\U0001f600" * 1024, "limit": "10"}
    async with httpx.AsyncClient(base_url=url) as client:
        allowed = await client.get("/api/invoices", params=query)
        too_long = await client.get("/api/invoices", params={"cursor": "x" * 40_000})

    assert allowed.status_code == 200, "the upstream got it"
    assert too_long.status_code == 414
    assert too_long.headers["content-type"] == "application/problem+json"
    assert too_long.json()["status"] == 414


async def test_a_body_past_the_gateways_memory_buffer_reaches_the_service(
    plain: tuple[str, Path],
) -> None:
    """nginx keeps 16 KiB of a body in memory and spools the rest to a file in its run folder:
    the test gateway's workers could not write there, and answered such a send with a 500."""
    url, _ = plain
    message = {"message": "\u0082" * 100_000}  # 200 KB of UTF-8: over 16 KiB, under 1 MiB
    async with httpx.AsyncClient(base_url=url) as client:
        sent = await client.post(f"/api/invoices/{uuid.uuid4()}/send", json=message)

    assert sent.status_code == 200, sent.text
    assert sent.json()["received-bytes"] == len(sent.request.content) > 16 * 1024


# --- the web app's files ----------------------------------------------------------------------

INDEX = b'<!doctype html><title>Ledgerline</title><script src="/assets/app-1a2b3c.js">'
ASSET = b"console.log('app')"
YEAR = "public, max-age=31536000, immutable"


@pytest.fixture(scope="module")
def with_app(echo: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A gateway whose static root holds a built app: index.html, a hashed asset, a favicon."""
    root = tmp_path_factory.mktemp("web-dist")
    (root / "assets").mkdir()
    (root / "index.html").write_bytes(INDEX)
    (root / "assets" / "app-1a2b3c.js").write_bytes(ASSET)
    (root / "favicon.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    config = GatewayConfig(
        port=free_port(),
        user_upstream=echo,
        invoice_upstream=echo,
        payment_upstream=echo,
        email_upstream=echo,
        static_root=root,
    )
    yield from run_gateway(config, tmp_path_factory.mktemp("gateway-app"))


async def test_hashed_assets_are_kept_for_a_year(with_app: tuple[str, Path]) -> None:
    url, _ = with_app
    async with httpx.AsyncClient(base_url=url) as client:
        asset = await client.get("/assets/app-1a2b3c.js")
        missing = await client.get("/assets/app-000000.js")

    assert asset.status_code == 200
    assert asset.content == ASSET
    assert asset.headers["content-type"] == "application/javascript"
    assert asset.headers["cache-control"] == YEAR
    # The location's header does not replace the server's security headers.
    assert asset.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in asset.headers["content-security-policy"]
    assert missing.status_code == 404, "an asset of another build is missing, not index.html"
    assert "cache-control" not in missing.headers


@pytest.mark.parametrize(
    "path", ["/", "/index.html", "/sales", "/sales/0191e0c4?status=paid&order_by=due_date"]
)
async def test_the_app_and_its_routes_are_index_html_never_cached(
    with_app: tuple[str, Path], path: str
) -> None:
    url, _ = with_app
    async with httpx.AsyncClient(base_url=url) as client:
        page = await client.get(path)
        again = await client.get(path, headers={"If-None-Match": page.headers["etag"]})

    assert page.status_code == 200
    assert page.content == INDEX
    assert page.headers["content-type"] == "text/html"
    assert page.headers["cache-control"] == "no-cache"
    csp = page.headers["content-security-policy"]
    for directive in ("script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"):
        assert directive in csp
    assert again.status_code == 304, "no-cache: asked again, and answered from the browser's copy"


async def test_a_file_at_the_root_is_served_as_itself(with_app: tuple[str, Path]) -> None:
    url, _ = with_app
    async with httpx.AsyncClient(base_url=url) as client:
        icon = await client.get("/favicon.svg")

    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/svg+xml"
    assert icon.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    "path",
    ["/api/nothing", "/.well-known/openid-configuration", "/gateway/status", "/internal/x"],
)
async def test_paths_outside_the_app_are_not_index_html(
    with_app: tuple[str, Path], path: str
) -> None:
    url, _ = with_app
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.get(path)

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert "cache-control" not in response.headers


@pytest.mark.parametrize("path", ["/api/invoices", "/invoices", "/api/emails", "/webhooks/x"])
async def test_api_answers_get_no_cache_header_of_the_gateway(
    with_app: tuple[str, Path], path: str
) -> None:
    url, _ = with_app
    Echo.seen.clear()
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.get(path)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json", "the service answered"
    assert "cache-control" not in response.headers
    assert Echo.seen == [f"GET {path}"]


@pytest.mark.parametrize("path", ["/invoices", "/invoices/new", "/invoices/0191e0c4?tab=emails"])
async def test_a_page_load_of_the_apps_invoice_screens_is_the_app(
    with_app: tuple[str, Path], path: str
) -> None:
    """/invoices is both seed 001's API and the app's screen: a browser's page load (and
    only that) gets the app; fetch() and API clients get the invoice service."""
    url, _ = with_app
    Echo.seen.clear()
    async with httpx.AsyncClient(base_url=url) as client:
        page_load = await client.get(path, headers={"Sec-Fetch-Mode": "navigate"})
        fetched = await client.get(path, headers={"Sec-Fetch-Mode": "cors"})
        scripted = await client.get(path)
        posted = await client.post(path, headers={"Sec-Fetch-Mode": "navigate"})

    assert page_load.content == INDEX
    assert page_load.headers["cache-control"] == "no-cache"
    assert fetched.headers["content-type"] == "application/json"
    assert scripted.headers["content-type"] == "application/json"
    assert posted.headers["content-type"] == "application/json", "a form post is the API's"
    assert len(Echo.seen) == 3


async def raw_get(url: str, target: str) -> tuple[int, str]:
    """A GET of the target exactly as written: an HTTP client would resolve its dot segments
    before sending, as a scanner's raw request does not."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    answer = (await reader.read()).decode(errors="replace")
    writer.close()
    head, _, body = answer.partition("\r\n\r\n")
    return int(head.split(" ", 2)[1]), body


async def test_no_path_reaches_a_services_metrics(plain: tuple[str, Path]) -> None:
    """The services' /metrics are for the scraper inside the network; from outside, every
    spelling of the path is refused by the gateway and none reaches a service."""
    url, _ = plain
    Echo.seen.clear()
    targets = [
        "/metrics",
        "/metrics/",
        "/metrics?format=prometheus",
        "/invoices/../metrics",
        "/api/invoices/%2e%2e/%2e%2e/metrics",
        "/api/users/..%2F..%2Fmetrics",
        "//metrics",
    ]
    answers = [await raw_get(url, target) for target in targets]

    for target, (status, body) in zip(targets, answers, strict=True):
        assert status in (400, 404), f"{target} answered {status}"
        assert "# TYPE" not in body
    assert not [seen for seen in Echo.seen if "metrics" in seen.lower()]
