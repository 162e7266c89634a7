"""Delivery webhooks: a signed report moves the status; a forged, altered, stale or replayed
one is refused with 401 and changes nothing."""

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.testing.s3 import S3Server
from mailer.dispatcher import Dispatcher
from simulators.mail_testing import MailProvidersServer

from .conftest import TOPIC_ARN
from .test_dispatcher import drain, message, queue, statuses

DispatcherFactory = Callable[..., Dispatcher]


async def sent_by(
    provider: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    aws: S3Server,
    make_dispatcher: DispatcherFactory,
    owner: uuid.UUID,
) -> tuple[uuid.UUID, str]:
    """A message the provider accepted: its send id and the provider's id."""
    send_id = await queue(sessionmaker, aws, owner)
    await drain(make_dispatcher(order=provider))
    sent = await message(sessionmaker, send_id)
    assert sent.status == "sent"
    assert sent.provider_message_id
    return send_id, sent.provider_message_id


async def post(simulators: MailProvidersServer, **spec: Any) -> dict[str, Any]:
    # The simulator posts back to this test's own event loop: its blocking control call
    # runs in a thread.
    return await asyncio.to_thread(simulators.webhook, topic_arn=TOPIC_ARN, **spec)


@pytest.mark.parametrize(
    ("provider", "event", "status"),
    [
        ("sendgrid", "delivered", "delivered"),
        ("sendgrid", "bounce", "bounced"),
        ("mailgun", "delivered", "delivered"),
        ("mailgun", "bounce", "bounced"),
        ("ses", "delivered", "delivered"),
        ("ses", "bounce", "bounced"),
    ],
)
async def test_a_signed_report_moves_the_status_once(
    sessionmaker: async_sessionmaker[AsyncSession],
    simulators: MailProvidersServer,
    aws: S3Server,
    make_dispatcher: DispatcherFactory,
    email_url: str,
    owner: uuid.UUID,
    provider: str,
    event: str,
    status: str,
) -> None:
    send_id, provider_id = await sent_by(provider, sessionmaker, aws, make_dispatcher, owner)
    url = f"{email_url}/webhooks/{provider}"

    answer = await post(
        simulators,
        provider=provider,
        url=url,
        send_id=str(send_id),
        provider_message_id=provider_id,
        event=event,
    )
    assert answer["status"] == 200, answer["body"]
    assert json.loads(answer["body"]) == {"applied": 1, "ignored": 0}
    assert (await message(sessionmaker, send_id)).status == status
    history = await statuses(sessionmaker, send_id)
    assert history[-1] == f"{status}:{provider}"

    # The same request again, byte for byte: a replay.
    replayed = await asyncio.to_thread(simulators.replay, url, answer["sent"], answer["headers"])
    assert replayed["status"] == 401
    assert await statuses(sessionmaker, send_id) == history


@pytest.mark.parametrize("provider", ["sendgrid", "mailgun", "ses"])
@pytest.mark.parametrize("forge", ["wrong_key", "altered", "stale"])
async def test_a_forged_report_is_refused_and_changes_nothing(
    sessionmaker: async_sessionmaker[AsyncSession],
    simulators: MailProvidersServer,
    aws: S3Server,
    make_dispatcher: DispatcherFactory,
    email_url: str,
    owner: uuid.UUID,
    provider: str,
    forge: str,
) -> None:
    send_id, provider_id = await sent_by(provider, sessionmaker, aws, make_dispatcher, owner)
    before = await statuses(sessionmaker, send_id)

    answer = await post(
        simulators,
        provider=provider,
        url=f"{email_url}/webhooks/{provider}",
        send_id=str(send_id),
        provider_message_id=provider_id,
        event="bounce",
        forge=forge,
    )

    assert answer["status"] == 401, answer["body"]
    assert json.loads(answer["body"])["status"] == 401
    assert await statuses(sessionmaker, send_id) == before
    assert (await message(sessionmaker, send_id)).status == "sent"


async def test_an_sns_certificate_from_elsewhere_is_refused(
    sessionmaker: async_sessionmaker[AsyncSession],
    simulators: MailProvidersServer,
    aws: S3Server,
    make_dispatcher: DispatcherFactory,
    email_url: str,
    owner: uuid.UUID,
) -> None:
    send_id, provider_id = await sent_by("ses", sessionmaker, aws, make_dispatcher, owner)
    signed = await post(
        simulators,
        provider="ses",
        url=f"{email_url}/webhooks/ses-nowhere",
        send_id=str(send_id),
        provider_message_id=provider_id,
        event="bounce",
    )
    body = json.loads(signed["sent"])
    # The same certificate, served from a host that is not allowed.
    body["SigningCertURL"] = body["SigningCertURL"].replace("127.0.0.1", "localhost")
    answer = await asyncio.to_thread(
        simulators.replay, f"{email_url}/webhooks/ses", json.dumps(body), signed["headers"]
    )
    assert answer["status"] == 401
    assert (await message(sessionmaker, send_id)).status == "sent"


async def test_a_report_of_another_topic_is_refused(
    sessionmaker: async_sessionmaker[AsyncSession],
    simulators: MailProvidersServer,
    aws: S3Server,
    make_dispatcher: DispatcherFactory,
    email_url: str,
    owner: uuid.UUID,
) -> None:
    send_id, provider_id = await sent_by("ses", sessionmaker, aws, make_dispatcher, owner)
    answer = await asyncio.to_thread(
        simulators.webhook,
        provider="ses",
        url=f"{email_url}/webhooks/ses",
        send_id=str(send_id),
        provider_message_id=provider_id,
        event="bounce",
        topic_arn="arn:aws:sns:us-east-1:999999999999:someone-elses",
    )
    assert answer["status"] == 401
    assert (await message(sessionmaker, send_id)).status == "sent"


async def test_a_report_settles_an_attempt_in_doubt_without_a_second_send(
    sessionmaker: async_sessionmaker[AsyncSession],
    simulators: MailProvidersServer,
    aws: S3Server,
    make_dispatcher: DispatcherFactory,
    email_url: str,
    owner: uuid.UUID,
) -> None:
    """SES cannot be asked; its delivery report tells us it had the message after all."""
    send_id = await queue(sessionmaker, aws, owner)
    dispatcher = make_dispatcher(order="ses,sendgrid")
    [claim] = [c for c in await dispatcher.claim(100) if c.message_id == send_id]
    attempt_id = await dispatcher._begin_attempt(claim, "ses")
    assert attempt_id is not None
    mail = await dispatcher._mail(await message(sessionmaker, send_id))
    ses_id = await dispatcher.providers["ses"].send(mail)  # the worker dies here

    answer = await post(
        simulators,
        provider="ses",
        url=f"{email_url}/webhooks/ses",
        send_id=str(send_id),
        provider_message_id=ses_id,
        event="delivered",
    )
    assert answer["status"] == 200, answer["body"]
    settled = await message(sessionmaker, send_id)
    assert settled.status == "delivered"
    assert settled.provider == "ses"
    await drain(dispatcher)
    assert str(send_id) not in simulators.counts().get("sendgrid", {})
