"""Sending: the email with its PDF, failover in order, breakers, in-doubt attempts settled by
asking the provider, waiting through outages, and giving up (with the fee's refund event)."""

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.metrics import sample
from common.outbox import utcnow
from common.testing.s3 import S3Server
from mailer.dispatcher import Dispatcher
from mailer.models import Attempt, Message, OutboxMessage, StatusChange
from simulators.mail_testing import MailProvidersServer, SmtpSinkServer

from .factories import PDF, handle, put_pdf, send_requested

DispatcherFactory = Callable[..., Dispatcher]


async def queue(
    sessionmaker: async_sessionmaker[AsyncSession], aws: S3Server, owner: uuid.UUID
) -> uuid.UUID:
    """An invoice email queued from its event; its send id."""
    send_id = uuid.uuid4()
    pdf = put_pdf(aws, f"{owner}/{send_id}/INV-0001.pdf")
    await handle(sessionmaker, send_requested(owner, pdf, send_id=send_id))
    return send_id


async def message(sessionmaker: async_sessionmaker[AsyncSession], send_id: uuid.UUID) -> Message:
    async with sessionmaker() as session:
        found = await session.get(Message, send_id)
    assert found is not None
    return found


async def statuses(sessionmaker: async_sessionmaker[AsyncSession], send_id: uuid.UUID) -> list[str]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(StatusChange).where(StatusChange.message_id == send_id).order_by(StatusChange.id)
        )
        return [f"{r.status}:{r.provider or '-'}" for r in rows]


async def attempts(
    sessionmaker: async_sessionmaker[AsyncSession], send_id: uuid.UUID
) -> list[tuple[str, str]]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(Attempt).where(Attempt.message_id == send_id).order_by(Attempt.id)
        )
        return [(r.provider, r.outcome) for r in rows]


async def drain(dispatcher: Dispatcher, rounds: int = 50, pause: float = 0.1) -> None:
    """Run the dispatcher until nothing is due for a while."""
    idle = 0
    for _ in range(rounds):
        if await dispatcher.run_once() == 0:
            idle += 1
            if idle >= 3:
                return
        else:
            idle = 0
        await asyncio.sleep(pause)


async def expire_lease(sessionmaker: async_sessionmaker[AsyncSession], send_id: uuid.UUID) -> None:
    """What the passing of time does to a lease: saves the test the wait."""
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Message)
            .where(Message.id == send_id)
            .values(lease_until=utcnow() - timedelta(seconds=1))
        )


def calls_now(provider: str, outcome: str) -> float:
    """The provider's sends with that outcome so far, as the metrics count them."""
    labels = {"provider": provider, "operation": "send", "outcome": outcome}
    return sample("provider_requests_total", labels) or 0.0


def carried(simulators: MailProvidersServer, send_id: uuid.UUID) -> dict[str, int]:
    """How many times each provider accepted this message."""
    return {
        provider: counts[str(send_id)]
        for provider, counts in simulators.counts().items()
        if str(send_id) in counts
    }


async def test_the_email_goes_out_once_with_its_pdf(
    sessionmaker: async_sessionmaker[AsyncSession],
    simulators: MailProvidersServer,
    aws: S3Server,
    make_dispatcher: DispatcherFactory,
    owner: uuid.UUID,
) -> None:
    send_id = await queue(sessionmaker, aws, owner)
    assert (await message(sessionmaker, send_id)).status == "queued"

    await drain(make_dispatcher())

    sent = await message(sessionmaker, send_id)
    assert sent.status == "sent"
    assert sent.provider == "sendgrid"
    assert sent.provider_message_id
    assert carried(simulators, send_id) == {"sendgrid": 1}
    [copy] = [m for m in simulators.messages() if m["send_id"] == str(send_id)]
    assert copy["attachment_bytes"] == len(PDF)
    assert copy["recipient"] == "client@example.com"
    assert await statuses(sessionmaker, send_id) == [
        "queued:-",
        "sending:-",
        "sent:sendgrid",
    ]
    # The body escapes what users typed.
    assert "<script>" not in sent.html_body
    assert "&lt;script&gt;" in sent.html_body


async def test_a_redelivered_request_makes_no_second_message(
    sessionmaker: async_sessionmaker[AsyncSession],
    simulators: MailProvidersServer,
    aws: S3Server,
    make_dispatcher: DispatcherFactory,
    owner: uuid.UUID,
) -> None:
    send_id = uuid.uuid4()
    pdf = put_pdf(aws, f"{owner}/{send_id}/INV-0001.pdf")
    event = send_requested(owner, pdf, send_id=send_id)
    await handle(sessionmaker, event)
    await drain(make_dispatcher())
    # The same request again (a new envelope, as a producer's retry would make).
    await handle(sessionmaker, send_requested(owner, pdf, send_id=send_id))
    await drain(make_dispatcher())
    assert carried(simulators, send_id) == {"sendgrid": 1}
    assert (await statuses(sessionmaker, send_id))[-1] == "sent:sendgrid"


@pytest.mark.parametrize("mode", ["error", "unauthorized", "rate_limited"])
async def test_a_failing_provider_passes_the_message_on(
    sessionmaker: async_sessionmaker[AsyncSession],
    simulators: MailProvidersServer,
    aws: S3Server,
    make_dispatcher: DispatcherFactory,
    owner: uuid.UUID,
    mode: str,
) -> None:
    simulators.fault("sendgrid", mode)
    send_id = await queue(sessionmaker, aws, owner)

    await drain(make_dispatcher())

    assert carried(simulators, send_id) == {"mailgun": 1}
    assert (await message(sessionmaker, send_id)).provider == "mailgun"
    assert await attempts(sessionmaker, send_id) == [
        ("sendgrid", "rejected"),
        ("mailgun", "accepted"),
    ]


async def test_sparkpost_carries_it_when_the_first_two_fail(
    sessionmaker: async_sessionmaker[AsyncSession],
    simulators: MailProvidersServer,
    aws: S3Server,
    make_dispatcher: DispatcherFactory,
    owner: uuid.UUID,
) -> None:
    simulators.fault("sendgrid", "error")
    simulators.fault("mailgun", "rate_limited")
    send_id = await queue(sessionmaker, aws, owner)
    await drain(make_dispatcher())
    assert carried(simulators, send_id) == {"sparkpost": 1}


@pytest.mark.parametrize("provider", ["sendgrid", "mailgun", "sparkpost"])
async def test_an_answer_lost_after_acceptance_is_found_not_resent(
    sessionmaker: async_sessionmaker[AsyncSession],
    simulators: MailProvidersServer,
    aws: S3Server,
    make_dispatcher: DispatcherFactory,
    owner: uuid.UUID,
    provider: str,
) -> None:
    """The provider takes the message and never answers: the next provider must not get it;
    once the lease runs out the provider is asked, and it has it."""
    simulators.fault(provider, "timeout", times=1, delay=5)
    send_id = await queue(sessionmaker, aws, owner)
    dispatcher = make_dispatcher(order=f"{provider},sendgrid,mailgun,sparkpost")

    await dispatcher.run_once()
    held = await message(sessionmaker, send_id)
    assert held.status == "sending"
    assert await attempts(sessionmaker, send_id) == [(provider, "in_doubt")]

    await expire_lease(sessionmaker, send_id)
    await drain(dispatcher)

    assert carried(simulators, send_id) == {provider: 1}
    settled = await message(sessionmaker, send_id)
    assert settled.status == "sent"
    assert settled.provider == provider
    assert await attempts(sessionmaker, send_id) == [(provider, "accepted")]


async def test_an_attempt_the_provider_never_took_goes_to_the_next_send(
    sessionmaker: async_sessionmaker[AsyncSession],
    simulators: MailProvidersServer,
    aws: S3Server,
    make_dispatcher: DispatcherFactory,
    owner: uuid.UUID,
) -> None:
    simulators.fault("mailgun", "hang", times=1, delay=3)
    send_id = await queue(sessionmaker, aws, owner)
    dispatcher = make_dispatcher(order="mailgun,sparkpost")

    await dispatcher.run_once()
    assert await attempts(sessionmaker, send_id) == [("mailgun", "in_doubt")]
    await expire_lease(sessionmaker, send_id)
    await drain(dispatcher)

    assert await attempts(sessionmaker, send_id) == [
        ("mailgun", "not_found"),
        ("mailgun", "accepted"),
    ]
    assert carried(simulators, send_id) == {"mailgun": 1}


async def test_a_worker_killed_after_the_provider_took_it_sends_nothing_twice(
    sessionmaker: async_sessionmaker[AsyncSession],
    simulators: MailProvidersServer,
    aws: S3Server,
    make_dispatcher: DispatcherFactory,
    owner: uuid.UUID,
) -> None:
    """The attempt is committed, the provider accepts, the worker dies before recording it."""
    send_id = await queue(sessionmaker, aws, owner)
    dying = make_dispatcher()
    [claim] = [c for c in await dying.claim(100) if c.message_id == send_id]
    attempt_id = await dying._begin_attempt(claim, "sendgrid")
    assert attempt_id is not None
    mail = await dying._mail(await message(sessionmaker, send_id))
    await dying.providers["sendgrid"].send(mail)  # ... and the process is gone

    await expire_lease(sessionmaker, send_id)
    await drain(make_dispatcher(order="mailgun,sendgrid"))

    assert carried(simulators, send_id) == {"sendgrid": 1}
    assert (await message(sessionmaker, send_id)).status == "sent"
    assert (claim.message_id, claim.resumed) == (send_id, False)


async def test_an_open_breaker_skips_the_provider(
    sessionmaker: async_sessionmaker[AsyncSession],
    simulators: MailProvidersServer,
    aws: S3Server,
    make_dispatcher: DispatcherFactory,
    owner: uuid.UUID,
) -> None:
    simulators.fault("sendgrid", "error")
    dispatcher = make_dispatcher(breaker_ttl_seconds=60)  # threshold 3
    calls_before = {
        "rejected": calls_now("sendgrid", "rejected"),
        "breaker_open": calls_now("sendgrid", "breaker_open"),
        "mailgun": calls_now("mailgun", "accepted"),
    }
    sent = []
    for _ in range(6):
        send_id = await queue(sessionmaker, aws, owner)
        await drain(dispatcher)
        sent.append(send_id)
    tried = [await attempts(sessionmaker, s) for s in sent]
    sendgrid_calls = sum(1 for rows in tried for provider, _ in rows if provider == "sendgrid")
    assert sendgrid_calls == 3
    assert all(carried(simulators, s) == {"mailgun": 1} for s in sent)
    # The metrics show it: sendgrid's breaker open, three failed calls, three skipped.
    assert sample("circuit_breaker_state", {"breaker": "email:sendgrid"}) == 2
    assert calls_now("sendgrid", "rejected") - calls_before["rejected"] == 3
    assert calls_now("sendgrid", "breaker_open") - calls_before["breaker_open"] == 3
    assert calls_now("mailgun", "accepted") - calls_before["mailgun"] == 6


async def test_the_breaker_probes_again_and_recovers(
    sessionmaker: async_sessionmaker[AsyncSession],
    simulators: MailProvidersServer,
    aws: S3Server,
    make_dispatcher: DispatcherFactory,
    owner: uuid.UUID,
) -> None:
    simulators.fault("sendgrid", "error", times=3)
    dispatcher = make_dispatcher(breaker_ttl_seconds=1)
    for _ in range(3):
        await queue(sessionmaker, aws, owner)
        await drain(dispatcher)
    assert sample("circuit_breaker_state", {"breaker": "email:sendgrid"}) == 2
    await asyncio.sleep(1.2)
    send_id = await queue(sessionmaker, aws, owner)
    await drain(dispatcher)
    assert carried(simulators, send_id) == {"sendgrid": 1}
    assert sample("circuit_breaker_state", {"breaker": "email:sendgrid"}) == 0


async def test_all_providers_down_the_message_waits_and_goes_out_after(
    sessionmaker: async_sessionmaker[AsyncSession],
    simulators: MailProvidersServer,
    aws: S3Server,
    make_dispatcher: DispatcherFactory,
    owner: uuid.UUID,
) -> None:
    for provider in ("sendgrid", "mailgun"):
        simulators.fault(provider, "error")
    send_id = await queue(sessionmaker, aws, owner)
    dispatcher = make_dispatcher(order="sendgrid,mailgun", breaker_ttl_seconds=0.5)

    await dispatcher.run_once()
    waiting = await message(sessionmaker, send_id)
    assert waiting.status == "queued"
    assert waiting.rounds == 1
    assert carried(simulators, send_id) == {}

    simulators.clear_faults()
    await asyncio.sleep(1.0)
    await drain(dispatcher)
    assert carried(simulators, send_id) == {"sendgrid": 1}
    assert (await statuses(sessionmaker, send_id))[-3:] == [
        "queued:-",
        "sending:-",
        "sent:sendgrid",
    ]


async def test_a_message_no_provider_takes_in_time_fails_with_its_fee(
    sessionmaker: async_sessionmaker[AsyncSession],
    simulators: MailProvidersServer,
    aws: S3Server,
    make_dispatcher: DispatcherFactory,
    owner: uuid.UUID,
) -> None:
    simulators.fault("sendgrid", "error")
    send_id = await queue(sessionmaker, aws, owner)
    await make_dispatcher(order="sendgrid", give_up_after_seconds=0).run_once()

    failed = await message(sessionmaker, send_id)
    assert failed.status == "failed"
    async with sessionmaker() as session:
        payloads = (await session.scalars(select(OutboxMessage.payload))).all()
    [event] = [p for p in payloads if str(send_id) in p and '"failed"' in p]
    assert f'"reference":"email-send:{send_id}"' in event.replace(" ", "")


async def test_a_missing_pdf_fails_the_message(
    sessionmaker: async_sessionmaker[AsyncSession],
    simulators: MailProvidersServer,
    aws: S3Server,
    make_dispatcher: DispatcherFactory,
    owner: uuid.UUID,
) -> None:
    send_id = uuid.uuid4()
    pdf = put_pdf(aws, f"{owner}/{send_id}/gone.pdf")
    aws.client("s3").delete_object(Bucket=pdf["bucket"], Key=pdf["key"])
    await handle(sessionmaker, send_requested(owner, pdf, send_id=send_id))
    await drain(make_dispatcher())
    assert (await message(sessionmaker, send_id)).status == "failed"
    assert carried(simulators, send_id) == {}


async def test_ses_sends_through_moto(
    sessionmaker: async_sessionmaker[AsyncSession],
    aws: S3Server,
    make_dispatcher: DispatcherFactory,
    owner: uuid.UUID,
) -> None:
    before = aws.client("ses").get_send_quota()["SentLast24Hours"]
    send_id = await queue(sessionmaker, aws, owner)
    await drain(make_dispatcher(order="ses"))
    sent = await message(sessionmaker, send_id)
    assert sent.status == "sent"
    assert sent.provider == "ses"
    assert aws.client("ses").get_send_quota()["SentLast24Hours"] == before + 1


async def test_smtp_sends_to_the_sink(
    sessionmaker: async_sessionmaker[AsyncSession],
    aws: S3Server,
    smtp_sink: SmtpSinkServer,
    make_dispatcher: DispatcherFactory,
    owner: uuid.UUID,
) -> None:
    send_id = await queue(sessionmaker, aws, owner)
    await drain(make_dispatcher(order="smtp"))
    assert (await message(sessionmaker, send_id)).provider == "smtp"
    assert smtp_sink.counts().get(str(send_id)) == 1


async def test_a_provider_whose_bounces_spike_goes_last(
    sessionmaker: async_sessionmaker[AsyncSession], make_dispatcher: DispatcherFactory
) -> None:
    """Twenty carried, eight bounced (40% > 20%) in the window: smtp moves behind ses."""
    dispatcher = make_dispatcher(order="smtp,ses")
    await dispatcher.order.refresh(sessionmaker)
    assert dispatcher.order.order() == ["smtp", "ses"]
    async with sessionmaker() as session, session.begin():
        for number in range(20):
            message_id = uuid.uuid4()
            session.add(StatusChange(message_id=message_id, status="sent", provider="smtp"))
            if number < 8:
                session.add(StatusChange(message_id=message_id, status="bounced", provider="smtp"))
    dispatcher = make_dispatcher(order="smtp,ses")
    await dispatcher.order.refresh(sessionmaker)
    assert dispatcher.order.order() == ["ses", "smtp"]


async def test_a_worker_whose_lease_was_taken_over_sends_nothing(
    sessionmaker: async_sessionmaker[AsyncSession],
    aws: S3Server,
    make_dispatcher: DispatcherFactory,
    owner: uuid.UUID,
) -> None:
    """A stalled worker wakes up after another took its message over: it must stop."""
    send_id = await queue(sessionmaker, aws, owner)
    stalled, other = make_dispatcher(), make_dispatcher()
    [first] = [c for c in await stalled.claim(100) if c.message_id == send_id]
    await expire_lease(sessionmaker, send_id)
    [second] = [c for c in await other.claim(100) if c.message_id == send_id]
    assert second.resumed

    assert await stalled._begin_attempt(first, "sendgrid") is None
    assert await other._begin_attempt(second, "sendgrid") is not None


async def test_a_worker_never_claims_again_what_it_is_sending(
    sessionmaker: async_sessionmaker[AsyncSession],
    aws: S3Server,
    make_dispatcher: DispatcherFactory,
    owner: uuid.UUID,
) -> None:
    send_id = await queue(sessionmaker, aws, owner)
    dispatcher = make_dispatcher()
    assert send_id in [c.message_id for c in await dispatcher.claim(100)]
    await expire_lease(sessionmaker, send_id)
    assert send_id not in [c.message_id for c in await dispatcher.claim(100)]
    dispatcher.holding.clear()  # its call is over
    assert send_id in [c.message_id for c in await dispatcher.claim(100)]


async def test_a_lease_outlasts_the_call_however_the_clock_is_rounded(
    sessionmaker: async_sessionmaker[AsyncSession],
    aws: S3Server,
    make_dispatcher: DispatcherFactory,
    owner: uuid.UUID,
) -> None:
    """Stored times have no fraction: the lease must still reach past timeout + grace."""
    send_id = await queue(sessionmaker, aws, owner)
    dispatcher = make_dispatcher(provider_timeout_seconds=1.0, in_doubt_grace_seconds=0.5)
    for _ in range(5):  # a few fractions of a second
        claimed_at = datetime.now(UTC).replace(tzinfo=None)
        [claim] = [c for c in await dispatcher.claim(100) if c.message_id == send_id]
        held = await message(sessionmaker, send_id)
        assert held.lease_until is not None
        assert held.lease_until >= claimed_at + timedelta(seconds=1.5)
        await expire_lease(sessionmaker, send_id)
        dispatcher.holding.clear()
        await asyncio.sleep(0.27)
        assert claim.token
