"""Hands queued messages to the providers: failover, circuit breakers, and no double sends.

How one message goes out (docs/email.md has the reasoning):

1. A worker claims it (SELECT ... FOR UPDATE SKIP LOCKED), sets it `sending` and takes a
   lease: until the lease runs out no other worker touches it.
2. For each provider in the order (the configured one, bounce-spiking providers last, those
   whose breaker is open skipped), an attempt row is committed as `pending` *before* the
   call. The answer settles it: accepted (the message is `sent`), rejected (nothing was
   sent: next provider at once), or in doubt (no answer: stop here).
3. An attempt left `pending` or `in_doubt` (a timeout, or a worker killed mid-call) is
   settled when the lease runs out, by asking that provider whether it has the message
   (`lookup`). Found: sent, with that provider. Not found: nothing was sent, go on. The
   provider cannot be asked right now: wait and ask again; the message never goes to a
   second provider while the first may have it. SES and SMTP cannot be asked: their attempt
   in doubt waits `unverifiable_wait_seconds` for a delivery webhook, then counts as unsent.
4. No provider took it: back to `queued` with a growing delay; after
   `give_up_after_seconds` it fails for good (and the fee is given back).
"""

import asyncio
import math
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.logging import get_logger
from common.metrics import PROVIDER_CALLS, breaker_listener
from common.outbox import utcnow
from common.runtime import sleep_unless
from common.tracing import resuming
from mailer import repository, service
from mailer.config import EmailSettings
from mailer.models import Attempt, AttemptOutcome, Message, MessageStatus
from mailer.providers import (
    Attachment,
    EmailProvider,
    LookupUnavailable,
    MessageRefused,
    OutgoingMail,
    ProviderError,
    ProviderInDoubt,
    ProviderRejected,
)

log = get_logger(__name__)


class AttachmentGone(Exception):
    """The PDF is not where the request said, or it changed since: it cannot be sent."""


class AttachmentUnavailable(Exception):
    """Object storage could not be read just now."""


class AttachmentStore:
    """Reads the invoice PDFs the invoice service stored (the claim check of the event)."""

    def __init__(self, settings: EmailSettings) -> None:
        self.client = boto3.client(
            "s3",
            region_name=settings.s3_region,
            endpoint_url=settings.s3_endpoint_url or None,
            aws_access_key_id=settings.aws_access_key_id.get_secret_value(),
            aws_secret_access_key=settings.aws_secret_access_key.get_secret_value(),
            config=BotoConfig(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2}),
        )

    def _fetch(self, bucket: str, key: str, etag: str) -> bytes:
        try:
            answer = self.client.get_object(Bucket=bucket, Key=key, IfMatch=etag)
            return bytes(answer["Body"].read())
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in {"NoSuchKey", "NoSuchBucket", "PreconditionFailed", "404", "412"}:
                raise AttachmentGone(code) from None
            raise AttachmentUnavailable(code) from None
        except BotoCoreError as exc:
            raise AttachmentUnavailable(type(exc).__name__) from None

    async def fetch(self, bucket: str, key: str, etag: str) -> bytes:
        return await asyncio.to_thread(self._fetch, bucket, key, etag)


def _count(provider: str, outcome: str) -> None:
    PROVIDER_CALLS.labels(provider, "send", outcome).inc()


class ProviderOrder:
    """The failover order for the next message: breakers and bounce spikes applied."""

    def __init__(self, settings: EmailSettings, names: Sequence[str]) -> None:
        self.settings = settings
        self.names = list(names)
        self.breakers = AsyncCircuitBreakerFactory(
            default_threshold=settings.breaker_threshold,
            default_ttl=settings.breaker_ttl_seconds,
            # The message's own fault says nothing about the provider's health.
            exclude=[MessageRefused],
        )
        self.breakers.add_listener(breaker_listener("email"))
        self.demoted: frozenset[str] = frozenset()
        self._checked_at: datetime | None = None

    async def refresh(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        """Every few seconds, demote providers whose recent bounces spike."""
        now = utcnow()
        if self._checked_at is not None and now - self._checked_at < timedelta(seconds=5):
            return
        self._checked_at = now
        since = now - timedelta(seconds=self.settings.bounce_window_seconds)
        async with sessionmaker() as session:
            counts = await repository.outcomes_since(session, since)
        demoted = set()
        for name in self.names:
            carried = counts.get((name, MessageStatus.SENT), 0)
            bounced = counts.get((name, MessageStatus.BOUNCED), 0)
            if carried >= self.settings.bounce_min_outcomes and (
                bounced / carried > self.settings.bounce_rate_limit
            ):
                demoted.add(name)
        if demoted != self.demoted:
            log.warning("email_providers_demoted", providers=sorted(demoted))
        self.demoted = frozenset(demoted)

    def order(self) -> list[str]:
        return [n for n in self.names if n not in self.demoted] + [
            n for n in self.names if n in self.demoted
        ]


@dataclass(frozen=True)
class Claimed:
    message_id: uuid.UUID
    resumed: bool  # a lease ran out: the last attempt may need settling first
    token: str = ""  # this claim's; a later claim by another worker replaces it


def lease_end(seconds: float) -> datetime:
    """A lease `seconds` long at the least. Times are stored to the second and `utcnow()`
    drops the fraction, so the end is rounded up and one second added: a lease never runs
    out before its holder's call is over."""
    return utcnow() + timedelta(seconds=math.ceil(seconds) + 1)


class Dispatcher:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        providers: dict[str, EmailProvider],
        settings: EmailSettings,
        store: AttachmentStore,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.providers = providers
        self.settings = settings
        self.store = store
        self.order = ProviderOrder(settings, list(providers))
        # Messages this worker is working on: never claimed again by it, whatever the lease.
        self.holding: set[uuid.UUID] = set()

    # --- the loop -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and send until stop is set, up to `send_concurrency` messages at a time."""
        # The blocking providers (SendGrid's library, boto3) run in threads: one for each
        # message in flight, so a call never waits for a thread while its lease runs.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(self.settings.send_concurrency + 4, thread_name_prefix="send")
        )
        active: set[asyncio.Task[None]] = set()
        try:
            while not stop.is_set():
                free = self.settings.send_concurrency - len(active)
                claimed: list[Claimed] = []
                if free > 0:
                    try:
                        await self.order.refresh(self.sessionmaker)
                        claimed = await self.claim(free)
                    except Exception as exc:  # the database is away: wait and look again
                        log.warning("email_claim_failed", error_type=type(exc).__name__)
                        await sleep_unless(stop, 1.0)
                for item in claimed:
                    task = asyncio.create_task(self.deliver(item))
                    active.add(task)
                    task.add_done_callback(active.discard)
                if not claimed:
                    if active:
                        await asyncio.wait(
                            active,
                            timeout=self.settings.dispatch_idle_seconds,
                            return_when=asyncio.FIRST_COMPLETED,
                        )
                    else:
                        await sleep_unless(stop, self.settings.dispatch_idle_seconds)
        finally:
            if active:
                await asyncio.gather(*active, return_exceptions=True)

    async def run_once(self) -> int:
        """Claim what is due and send it; for tests and the benchmark. The number claimed."""
        await self.order.refresh(self.sessionmaker)
        claimed = await self.claim(self.settings.send_concurrency)
        await asyncio.gather(*(self.deliver(item) for item in claimed))
        return len(claimed)

    async def claim(self, limit: int) -> list[Claimed]:
        now = utcnow()
        lease = lease_end(self.settings.in_doubt_after_seconds)
        claimed = []
        async with self.sessionmaker() as session, session.begin():
            for message in await repository.claim_due(session, now, limit, self.holding):
                resumed = message.status == MessageStatus.SENDING
                if not resumed:
                    service.change_status(session, message, MessageStatus.SENDING)
                message.lease_until = lease
                message.lease_token = str(uuid.uuid4())
                claimed.append(Claimed(message.id, resumed, message.lease_token))
        self.holding.update(item.message_id for item in claimed)
        return claimed

    async def deliver(self, item: Claimed) -> None:
        try:
            await self._deliver(item)
        except Exception as exc:
            # The lease runs out and another pass settles it: nothing is lost.
            log.exception("email_delivery_crashed", error_type=type(exc).__name__)
        finally:
            self.holding.discard(item.message_id)

    # --- one message ----------------------------------------------------------------------

    async def _deliver(self, item: Claimed) -> None:
        if item.resumed and not await self._settle_last_attempt(item):
            return
        async with self.sessionmaker() as session:
            message = await repository.get_message(session, item.message_id)
        if message is None or message.status != MessageStatus.SENDING:
            return
        with resuming(
            "send email",
            message.traceparent,
            message.tracestate,
            {"email.message_id": str(message.id), "email.kind": message.kind},
        ):
            await self._send(item, message)

    async def _send(self, item: Claimed, message: Message) -> None:
        try:
            mail = await self._mail(message)
        except AttachmentGone as exc:
            await self._fail(item, f"the invoice PDF is gone ({exc})")
            return
        except AttachmentUnavailable as exc:
            log.warning("email_attachment_unavailable", error_type=str(exc))
            await self._requeue(item, "object storage unavailable")
            return
        for name in self.order.order():
            outcome = await self._try(item, name, mail)
            if outcome in ("accepted", "stop"):
                return
        await self._requeue(item, "no provider accepted it")

    async def _mail(self, message: Message) -> OutgoingMail:
        attachments: tuple[Attachment, ...] = ()
        if message.attachment_bucket and message.attachment_key:
            content = await self.store.fetch(
                message.attachment_bucket, message.attachment_key, message.attachment_etag or ""
            )
            attachments = (Attachment(message.attachment_filename or "invoice.pdf", content),)
        return OutgoingMail(
            message_id=message.id,
            from_email=self.settings.from_email,
            from_name=message.sender_name,
            to_email=message.recipient_email,
            to_name=message.recipient_name,
            reply_to=message.reply_to,
            subject=message.subject,
            text=message.text_body,
            html=message.html_body,
            attachments=attachments,
        )

    async def _try(self, item: Claimed, name: str, mail: OutgoingMail) -> str:
        """One provider: 'accepted', 'next' (nothing sent) or 'stop' (in doubt, refused, or
        the message is no longer ours)."""
        provider = self.providers[name]
        breaker = await self.order.breakers.get_breaker(name)
        attempt_id: int | None = None
        try:
            async with breaker:
                attempt_id = await self._begin_attempt(item, name)
                if attempt_id is None:
                    return "stop"
                # The whole call within the timeout, so it is over before the lease is:
                # an async call cancelled here sends nothing more.
                provider_id = await asyncio.wait_for(
                    provider.send(mail), self.settings.provider_timeout_seconds
                )
        except OpenedState:
            _count(name, "breaker_open")
            return "next"
        except TimeoutError:
            _count(name, "timeout")
            await self._in_doubt(
                mail.message_id, _recorded(attempt_id), f"{name} gave no answer in time"
            )
            return "stop"
        except ProviderInDoubt as exc:
            _count(name, "in_doubt")
            await self._in_doubt(mail.message_id, _recorded(attempt_id), exc.reason)
            return "stop"
        except ProviderRejected as exc:
            _count(name, "rejected")
            await self._end_attempt(_recorded(attempt_id), AttemptOutcome.REJECTED, exc.reason)
            return "next"
        except MessageRefused as exc:
            _count(name, "message_refused")
            await self._end_attempt(_recorded(attempt_id), AttemptOutcome.REJECTED, exc.reason)
            await self._fail(item, exc.reason)
            return "stop"
        _count(name, "accepted")
        await self._accepted(mail.message_id, attempt_id, name, provider_id)
        return "accepted"

    # --- transactions ---------------------------------------------------------------------

    async def _ours(self, session: AsyncSession, item: Claimed) -> Message | None:
        """The message, locked, if this claim still holds it."""
        message = await repository.lock_message(session, item.message_id)
        if message is None or message.status != MessageStatus.SENDING:
            return None
        if message.lease_token != item.token:
            return None  # another worker took it over
        return message

    async def _begin_attempt(self, item: Claimed, provider: str) -> int | None:
        """Commit the attempt before the call, and a lease that outlasts the call; None when
        the message is no longer ours."""
        now = utcnow()
        async with self.sessionmaker() as session, session.begin():
            message = await self._ours(session, item)
            if message is None:
                return None
            message.lease_until = lease_end(self.settings.in_doubt_after_seconds)
            attempt = Attempt(
                message_id=item.message_id,
                provider=provider,
                outcome=AttemptOutcome.PENDING,
                started_at=now,
            )
            session.add(attempt)
            await session.flush()
            return attempt.id

    async def _end_attempt(self, attempt_id: int, outcome: AttemptOutcome, detail: str) -> None:
        async with self.sessionmaker() as session, session.begin():
            attempt = await session.get(Attempt, attempt_id)
            if attempt is not None and attempt.outcome in (
                AttemptOutcome.PENDING,
                AttemptOutcome.IN_DOUBT,
            ):
                attempt.outcome = outcome
                attempt.detail = detail[:200]
                attempt.finished_at = utcnow()

    async def _in_doubt(self, message_id: uuid.UUID, attempt_id: int, detail: str) -> None:
        """Leave the message held; when the lease runs out the provider is asked."""
        log.warning("email_attempt_in_doubt", message_id=str(message_id), detail=detail)
        await self._end_attempt(attempt_id, AttemptOutcome.IN_DOUBT, detail)

    async def _accepted(
        self, message_id: uuid.UUID, attempt_id: int, provider: str, provider_id: str
    ) -> None:
        async with self.sessionmaker() as session, session.begin():
            attempt = await session.get(Attempt, attempt_id)
            if attempt is not None:
                attempt.outcome = AttemptOutcome.ACCEPTED
                attempt.finished_at = utcnow()
            message = await repository.lock_message(session, message_id)
            if message is None:
                return
            message.lease_until = None
            message.lease_token = None
            if message.status == MessageStatus.SENDING:
                message.provider = provider
                message.provider_message_id = provider_id or None
                service.change_status(session, message, MessageStatus.SENT, provider=provider)

    async def _requeue(self, item: Claimed, reason: str) -> None:
        """No provider took it this round: wait and try again, or give up for good."""
        now = utcnow()
        async with self.sessionmaker() as session, session.begin():
            message = await self._ours(session, item)
            if message is None:
                return
            message.rounds += 1
            message.lease_until = None
            message.lease_token = None
            age = (now - message.created_at).total_seconds()
            if age >= self.settings.give_up_after_seconds:
                service.change_status(
                    session, message, MessageStatus.FAILED, detail=f"{reason}; gave up"
                )
                return
            message.next_attempt_at = now + service.retry_delay(
                self.settings.retry_base_seconds, self.settings.retry_max_seconds, message.rounds
            )
            service.change_status(session, message, MessageStatus.QUEUED, detail=reason)

    async def _fail(self, item: Claimed, reason: str) -> None:
        async with self.sessionmaker() as session, session.begin():
            message = await self._ours(session, item)
            if message is None:
                return
            message.lease_until = None
            message.lease_token = None
            service.change_status(session, message, MessageStatus.FAILED, detail=reason)

    # --- settling an attempt in doubt -------------------------------------------------------

    async def _settle_last_attempt(self, item: Claimed) -> bool:
        """Settle the attempt a lapsed lease left open; True when the message may be sent."""
        message_id = item.message_id
        async with self.sessionmaker() as session:
            attempt = await repository.last_attempt(session, message_id)
        if attempt is None or attempt.outcome not in (
            AttemptOutcome.PENDING,
            AttemptOutcome.IN_DOUBT,
        ):
            return True
        provider = self.providers.get(attempt.provider)
        now = utcnow()
        if provider is None or not provider.can_lookup:
            # One second more: started_at was stored without its fraction.
            waited_until = attempt.started_at + timedelta(
                seconds=math.ceil(self.settings.unverifiable_wait_seconds) + 1
            )
            if now < waited_until:
                await self._hold(item, waited_until)
                return False
            await self._end_attempt(
                attempt.id, AttemptOutcome.NOT_FOUND, "no delivery report within the wait"
            )
            return True
        try:
            found = await provider.lookup(message_id)
        except (LookupUnavailable, ProviderError) as exc:
            log.warning("email_lookup_failed", provider=attempt.provider, detail=str(exc))
            await self._hold(item, lease_end(self.settings.in_doubt_after_seconds))
            return False
        if found is None:
            await self._end_attempt(
                attempt.id, AttemptOutcome.NOT_FOUND, f"{attempt.provider} does not have it"
            )
            return True
        await self._accepted(message_id, attempt.id, attempt.provider, found)
        return False

    async def _hold(self, item: Claimed, until: datetime) -> None:
        """Keep the message sending, untouched until then (another worker may take it then)."""
        async with self.sessionmaker() as session, session.begin():
            message = await self._ours(session, item)
            if message is not None:
                message.lease_until = until


def _recorded(attempt_id: int | None) -> int:
    """The attempt a provider's error belongs to. Those errors come from the provider call
    alone, and the call is made only once its attempt is recorded."""
    if attempt_id is None:
        raise RuntimeError("a provider answered before its attempt was recorded")
    return attempt_id
