"""The payment service's reads as the database sees them: each is one round trip (no ping
before it, no COMMIT or ROLLBACK after it), through a proxy that counts what reaches MySQL."""

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from common.testing.mysql_proxy import MysqlProxy
from common.testing.servers import MysqlServer
from payment.config import PaymentSettings
from payment.main import create_app

from .factories import top_up


@pytest.fixture
async def proxy(mysql_server: MysqlServer) -> AsyncIterator[MysqlProxy]:
    proxy = await MysqlProxy(mysql_server.host, mysql_server.port).start()
    yield proxy
    await proxy.stop()


@pytest.fixture
async def proxied_api(
    settings: PaymentSettings, payment_database: str, proxy: MysqlProxy
) -> AsyncIterator[httpx.AsyncClient]:
    """The same service on the same schema, reaching it through the proxy."""
    database = payment_database.rsplit("/", 1)[1]
    application = create_app(
        settings.model_copy(update={"database_url": SecretStr(proxy.url(database))})
    )
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://payment.test"
        ) as api,
    ):
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
    proxy: MysqlProxy,
    auth: dict[str, str],
    path: str,
) -> None:
    topped_up = await top_up(api, auth, "10.00")
    assert topped_up.status_code == 201, topped_up.text
    url = path.format(payment_id=topped_up.json()["payment"]["id"])
    # A first request warms the pool: connecting is not the read's cost.
    assert (await proxied_api.get(url, headers=auth)).status_code == 200
    proxy.commands.clear()

    read = await proxied_api.get(url, headers=auth)

    assert read.status_code == 200, read.text
    sent = proxy.queries()
    assert len(sent) == 1, sent
    assert sent[0].startswith("SELECT"), sent
