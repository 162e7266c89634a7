"""The profile read as the database sees it: `GET /api/users/me` is one round trip (no ping
before it, no COMMIT or ROLLBACK after it), and answers when its connection was cut."""

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from common.testing.mysql_proxy import MysqlProxy
from user.config import UserSettings
from user.main import create_app

from .helpers import BASE_URL, bearer, sign_in


@pytest.fixture
async def proxied_api(
    settings: UserSettings, user_database: str, mysql_proxy: MysqlProxy
) -> AsyncIterator[httpx.AsyncClient]:
    """The same service on the same schema, reaching it through the proxy."""
    database = user_database.rsplit("/", 1)[1]
    application = create_app(
        settings.model_copy(update={"database_url": SecretStr(mysql_proxy.url(database))})
    )
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url=BASE_URL) as api,
    ):
        yield api


async def test_reading_the_profile_is_one_round_trip(
    browser: httpx.AsyncClient,
    proxied_api: httpx.AsyncClient,
    mysql_proxy: MysqlProxy,
    subject: str,
) -> None:
    headers = bearer(await sign_in(browser, subject))
    assert (await proxied_api.get("/api/users/me", headers=headers)).status_code == 200
    mysql_proxy.commands.clear()

    me = await proxied_api.get("/api/users/me", headers=headers)

    assert me.status_code == 200, me.text
    assert me.json()["email"] == subject
    sent = mysql_proxy.queries()
    assert len(sent) == 1, sent
    assert sent[0].startswith("SELECT"), sent


async def test_the_profile_answers_after_its_connections_were_cut(
    browser: httpx.AsyncClient,
    proxied_api: httpx.AsyncClient,
    mysql_proxy: MysqlProxy,
    subject: str,
) -> None:
    headers = bearer(await sign_in(browser, subject))
    assert (await proxied_api.get("/api/users/me", headers=headers)).status_code == 200

    await mysql_proxy.drop_connections()
    me = await proxied_api.get("/api/users/me", headers=headers)

    assert me.status_code == 200, me.text
