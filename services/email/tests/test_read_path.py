"""The owner's email reads as the database sees them: each is one round trip (no ping before
it, no COMMIT or ROLLBACK after it), through a proxy that counts what reaches MySQL."""

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.testing.mysql_proxy import MysqlProxy, app_client, through
from common.testing.s3 import S3Server
from mailer.config import EmailSettings
from mailer.main import create_app

from .factories import handle, put_pdf, send_requested


@pytest.fixture
async def proxied_api(
    settings: EmailSettings, email_database: str, mysql_proxy: MysqlProxy
) -> AsyncIterator[httpx.AsyncClient]:
    """The same service on the same schema, reaching it through the proxy."""
    app = create_app(through(mysql_proxy, settings, email_database))
    async with app_client(app, "http://email.test") as api:
        yield api


@pytest.mark.parametrize(
    "path",
    [
        "/api/emails",
        "/api/emails?status=queued&status=bounced",
        "/api/emails/{send_id}",
        "/api/invoices/{invoice_id}/emails",
    ],
)
async def test_each_read_is_one_round_trip(
    sessionmaker: async_sessionmaker[AsyncSession],
    aws: S3Server,
    proxied_api: httpx.AsyncClient,
    mysql_proxy: MysqlProxy,
    auth: dict[str, str],
    owner: uuid.UUID,
    path: str,
) -> None:
    send_id, invoice_id = uuid.uuid4(), uuid.uuid4()
    pdf = put_pdf(aws, f"{owner}/{send_id}/INV-0001.pdf")
    await handle(sessionmaker, send_requested(owner, pdf, send_id=send_id, invoice_id=invoice_id))
    url = path.format(send_id=send_id, invoice_id=invoice_id)
    # A first request warms the pool: connecting is not the read's cost.
    assert (await proxied_api.get(url, headers=auth)).status_code == 200
    mysql_proxy.commands.clear()

    read = await proxied_api.get(url, headers=auth)

    assert read.status_code == 200, read.text
    sent = mysql_proxy.queries()
    assert len(sent) == 1, sent
    assert sent[0].startswith("SELECT"), sent
