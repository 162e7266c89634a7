"""The payment service's reads as the database sees them: each is one round trip (no ping
before it, no COMMIT or ROLLBACK after it), through a proxy that counts what reaches MySQL."""

from collections.abc import AsyncIterator

import httpx
import pytest

from common.testing.mysql_proxy import MysqlProxy, app_client, through
from payment.config import PaymentSettings
from payment.main import create_app

from .factories import top_up


@pytest.fixture
async def proxied_api(
    settings: PaymentSettings, payment_database: str, mysql_proxy: MysqlProxy
) -> AsyncIterator[httpx.AsyncClient]:
    """The same service on the same schema, reaching it through the proxy."""
    app = create_app(through(mysql_proxy, settings, payment_database))
    async with app_client(app, "http://payment.test") as api:
        yield api


@pytest.mark.parametrize(
    "path",
    [
        "/api/payments",
        "/api/payments/{payment_id}",
        "/api/wallet",
        "/api/wallet/transactions",
        "/api/payment-methods",
        "/api/billing-runs",
    ],
)
async def test_each_read_is_one_round_trip(
    api: httpx.AsyncClient,
    proxied_api: httpx.AsyncClient,
    mysql_proxy: MysqlProxy,
    auth: dict[str, str],
    path: str,
) -> None:
    topped_up = await top_up(api, auth, "10.00")
    assert topped_up.status_code == 201, topped_up.text
    url = path.format(payment_id=topped_up.json()["payment"]["id"])
    # A first request warms the pool: connecting is not the read's cost.
    assert (await proxied_api.get(url, headers=auth)).status_code == 200
    mysql_proxy.commands.clear()

    read = await proxied_api.get(url, headers=auth)

    assert read.status_code == 200, read.text
    sent = mysql_proxy.queries()
    assert len(sent) == 1, sent
    assert sent[0].startswith("SELECT"), sent
