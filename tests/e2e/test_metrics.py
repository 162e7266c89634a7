"""The running suite's metrics, scraped as Prometheus would: each API counts requests under
their route templates, each worker serves its consumer lag, handler durations and outbox
backlog on a port of its own, and the gateway passes no `/metrics` on."""

import asyncio
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Suite

# Every sample of one scrape: (name, labels) and value.
Samples = list[tuple[str, dict[str, str], float]]


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url)
    response.raise_for_status()
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


async def scrape_all(urls: list[str]) -> Samples:
    """Every replica's samples together: the gateway sends a request to any of them."""
    return [sample for url in urls for sample in await scrape(url)]


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of that name whose labels include these."""
    return sum(
        value
        for sample_name, sample_labels, value in samples
        if sample_name == name and labels.items() <= sample_labels.items()
    )


async def until(
    read: Callable[[], Any], check: Callable[[Samples], bool], within_seconds: float = 60
) -> Samples:
    async with asyncio.timeout(within_seconds):
        while True:
            samples: Samples = await read()
            if check(samples):
                return samples
            await asyncio.sleep(0.25)


async def test_an_api_counts_requests_by_route_and_the_gateway_hides_the_metrics(
    suite: Suite, sign_in_as: Any
) -> None:
    alice = await sign_in_as(f"metrics-{uuid.uuid4().hex[:8]}@example.com")
    invoice_apis = [f"{url}/metrics" for url in suite.replicas["invoice"]]
    before = await scrape_all(invoice_apis)

    created = await alice.api.post(
        "/api/clients", json={"name": "Gauge Ltd", "email": "billing@gauge.example.com"}
    )
    assert created.status_code == 201
    found = await alice.api.get(f"/api/clients/{created.json()['id']}")
    missing = await alice.api.get("/api/clients/999999999")
    from_outside = await alice.api.get("/metrics")
    after = await scrape_all(invoice_apis)

    assert (found.status_code, missing.status_code) == (200, 404)
    assert from_outside.status_code == 404
    assert "# TYPE" not in from_outside.text

    def counted(method: str, route: str, status_class: str) -> float:
        labels = {"method": method, "route": route, "status_class": status_class}
        return total(after, "http_server_requests_total", **labels) - total(
            before, "http_server_requests_total", **labels
        )

    assert counted("POST", "/api/clients", "2xx") == 1
    assert counted("GET", "/api/clients/{client_id}", "2xx") == 1
    assert counted("GET", "/api/clients/{client_id}", "4xx") == 1
    assert not [labels for _, labels, _ in after if "999999999" in labels.get("route", "")]


async def test_each_worker_reports_its_lag_handlers_and_outbox_and_catches_up(
    suite: Suite, sign_in_as: Any
) -> None:
    """A sign-in publishes `user.registered`, which the invoice worker handles; a new invoice
    publishes `invoice.created` from the invoice worker's relay, which the payment worker
    handles. Each worker's own metrics show the events handled, its lag back at 0 on every
    partition it holds, and its outbox empty."""
    invoice_workers = [url for name, url in suite.worker_metrics.items() if "invoice" in name]
    payment_workers = [url for name, url in suite.worker_metrics.items() if "payment" in name]
    invoice_before = await scrape_all(invoice_workers)
    payment_before = await scrape_all(payment_workers)

    bob = await sign_in_as(f"metrics-{uuid.uuid4().hex[:8]}@example.com")
    client = await bob.api.post(
        "/api/clients", json={"name": "Lag Ltd", "email": "billing@lag.example.com"}
    )
    invoice = await bob.api.post(
        "/api/invoices",
        json={"client_id": client.json()["id"], "description": "Lag", "amount": "12.50"},
    )
    assert invoice.status_code == 201

    def handled(before: Samples, group: str, event_type: str) -> Callable[[Samples], bool]:
        labels = {"consumergroup": group, "event_type": event_type}
        name = "event_handler_duration_seconds_count"

        def check(samples: Samples) -> bool:
            lags = [v for n, labels_, v in samples if n == "kafka_consumergroup_lag"]
            return (
                total(samples, name, **labels) > total(before, name, **labels)
                and bool(lags)
                and not any(lags)
            )

        return check

    invoice_after = await until(
        lambda: scrape_all(invoice_workers),
        handled(invoice_before, "invoice-service", "user.registered"),
    )
    payment_after = await until(
        lambda: scrape_all(payment_workers),
        handled(payment_before, "payment-service", "invoice.created"),
    )

    # Every partition of every topic the invoice worker reads, each at 0.
    lag_of = {
        (labels["topic"], labels["partition"]): value
        for name, labels, value in invoice_after
        if name == "kafka_consumergroup_lag"
    }
    assert {topic for topic, _ in lag_of} >= {"user.events", "payment.events"}
    assert set(lag_of.values()) == {0}
    assert total(payment_after, "kafka_consumergroup_lag", consumergroup="payment-service") == 0
    # The invoice worker's relay published invoice.created (the payment worker has handled
    # it by now), and its outbox is empty again.
    published = "outbox_published_events_total"
    await until(
        lambda: scrape_all(invoice_workers),
        lambda samples: (
            total(samples, published) > total(invoice_before, published)
            and total(samples, "outbox_unpublished_events") == 0
        ),
    )


async def test_every_worker_serves_its_metrics_on_a_port_of_its_own(suite: Suite) -> None:
    """Each worker process, the sync one (with its job consumer) included, counts its outbox
    and shows the lag of every consumer group it runs."""
    groups: dict[str, set[str]] = {}
    for name, url in suite.worker_metrics.items():

        def ready(samples: Samples) -> bool:
            names = {sample_name for sample_name, _, _ in samples}
            return {"outbox_unpublished_events", "kafka_consumergroup_lag"} <= names

        samples = await until(partial(scrape, url), ready)
        groups[name] = {
            labels["consumergroup"]
            for sample_name, labels, _ in samples
            if sample_name == "kafka_consumergroup_lag"
        }

    assert {name.split("-worker")[0] for name in groups} == {
        "user",
        "invoice",
        "payment",
        "email",
        "sync",
    }
    assert groups["sync-worker"] >= {"sync-service", "sync-workers"}
    assert groups["invoice-worker"] == {"invoice-service"}
