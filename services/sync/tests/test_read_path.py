"""The owner's sync reads as the database sees them: each is one round trip (no ping before
it, no COMMIT or ROLLBACK after it), through a proxy that counts what reaches MySQL."""

from collections.abc import AsyncIterator

import httpx
import pytest

from common.testing.mysql_proxy import MysqlProxy, app_client, through
from sync.config import SyncSettings
from sync.main import create_app


@pytest.fixture
async def proxied_api(
    settings: SyncSettings, sync_database: str, mysql_proxy: MysqlProxy
) -> AsyncIterator[httpx.AsyncClient]:
    """The same service on the same schema, reaching it through the proxy."""
    app = create_app(through(mysql_proxy, settings, sync_database))
    async with app_client(app, "http://sync.test") as api:
        yield api


@pytest.mark.parametrize("path", ["/api/sync/connections", "/api/sync/status"])
async def test_each_read_is_one_round_trip(
    api: httpx.AsyncClient,
    proxied_api: httpx.AsyncClient,
    mysql_proxy: MysqlProxy,
    auth: dict[str, str],
    path: str,
) -> None:
    # Nothing listens on port 9: the connection's first sync would park, which is no matter.
    created = await api.post(
        "/api/sync/connections",
        json={"base_url": "http://127.0.0.1:9", "api_key": "sk_test_read_path"},
        headers=auth,
    )
    assert created.status_code == 201, created.text
    # A first request warms the pool: connecting is not the read's cost.
    assert (await proxied_api.get(path, headers=auth)).status_code == 200
    mysql_proxy.commands.clear()

    read = await proxied_api.get(path, headers=auth)

    assert read.status_code == 200, read.text
    sent = mysql_proxy.queries()
    assert len(sent) == 1, sent
    assert sent[0].startswith("SELECT"), sent
