"""The email providers behind one interface, each with its own idea of "did you take it?".

`send` hands one message to the provider and returns the id the provider gave it, or raises:

- `ProviderRejected`: the provider answered and did not take the message (5xx, 401/403 bad
  credentials, 429 or quota), or could not be reached at all (refused connection, DNS,
  connect timeout). Nothing was sent; the message may go to the next provider at once.
- `ProviderInDoubt`: the request went out and no answer came back (read timeout, dropped
  connection). The provider may have the message. It must not go to another provider until
  this one has been asked (`lookup`), or, for a provider that cannot be asked, until a wait
  has passed (docs/email.md says what that leaves).
- `MessageRefused`: the provider refused this message for what it is (400: a malformed
  address, an attachment it will not carry). Another provider would refuse it too.

`lookup` asks the provider whether it holds a message we sent with our message id, through
the provider's own search API: SendGrid's Email Activity (`unique_args['send_id']`),
Mailgun's events (our `Message-Id` header), SparkPost's message events (the campaign id).
SES and SMTP have no such API (`can_lookup` is False).
"""

import asyncio
import base64
import json
import socket
import urllib.error
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr
from typing import Any, Protocol

import aiosmtplib
import boto3
import httpx
import python_http_client.exceptions as sendgrid_errors
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
)
from sendgrid import SendGridAPIClient

from mailer.config import EmailSettings

# HTTP answers that move a message to the next provider: the provider is down, overloaded,
# over its quota, or our credentials with it are wrong. Anything else in 4xx is the message.
FAILOVER_STATUSES = frozenset({401, 403, 408, 429})


class ProviderError(Exception):
    """A provider did not accept a message; `reason` is short and never holds a secret."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason[:200]


class ProviderRejected(ProviderError):
    """Not sent: try the next provider."""


class ProviderInDoubt(ProviderError):
    """Maybe sent: ask the provider before trying any other."""


class MessageRefused(ProviderError):
    """This message cannot be sent as it is."""


class LookupUnavailable(ProviderError):
    """The provider could not be asked right now."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    content_type: str = "application/pdf"


@dataclass(frozen=True)
class OutgoingMail:
    """One message as every provider gets it."""

    message_id: uuid.UUID
    from_email: str
    from_name: str
    to_email: str
    to_name: str
    reply_to: str | None
    subject: str
    text: str
    html: str
    attachments: tuple[Attachment, ...] = field(default=())

    @property
    def rfc_message_id(self) -> str:
        """The Message-Id header: our id, so a copy of the message names where it came from."""
        domain = self.from_email.rsplit("@", 1)[-1]
        return f"<{self.message_id}@{domain}>"

    def mime(self) -> EmailMessage:
        """The message as RFC 5322 text with its attachments, for SES and SMTP."""
        message = EmailMessage()
        message["From"] = formataddr((self.from_name, self.from_email))
        message["To"] = formataddr((self.to_name, self.to_email))
        if self.reply_to:
            message["Reply-To"] = self.reply_to
        message["Subject"] = self.subject
        message["Message-Id"] = self.rfc_message_id
        message["X-Ledgerline-Send-Id"] = str(self.message_id)
        message.set_content(self.text)
        message.add_alternative(self.html, subtype="html")
        for attachment in self.attachments:
            main, _, sub = attachment.content_type.partition("/")
            message.add_attachment(
                attachment.content, maintype=main, subtype=sub, filename=attachment.filename
            )
        return message


class EmailProvider(Protocol):
    name: str
    can_lookup: bool

    async def send(self, mail: OutgoingMail) -> str: ...

    async def lookup(self, message_id: uuid.UUID) -> str | None: ...


def _from_http_status(provider: str, status: int, body: str) -> ProviderError:
    """The error a non-2xx answer stands for."""
    if status >= 500 or status in FAILOVER_STATUSES:
        return ProviderRejected(f"{provider} answered {status}")
    return MessageRefused(f"{provider} refused the message ({status}): {body[:120]}")


def _from_httpx_error(provider: str, exc: httpx.HTTPError) -> ProviderError:
    """Errors before the request left (no connection) prove nothing was sent."""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return ProviderRejected(f"{provider} unreachable ({type(exc).__name__})")
    return ProviderInDoubt(f"{provider} gave no answer ({type(exc).__name__})")


# --- SendGrid -------------------------------------------------------------------------------


class SendGridProvider:
    """SendGrid's v3 Mail Send through the `sendgrid` library (blocking, so in a thread)."""

    name = "sendgrid"
    can_lookup = True

    def __init__(self, settings: EmailSettings) -> None:
        self.client = SendGridAPIClient(
            settings.sendgrid_api_key.get_secret_value(), host=settings.sendgrid_url
        )
        # The library's HTTP client takes its timeout from here for every request it builds.
        self.client.client.timeout = settings.provider_timeout_seconds

    def _body(self, mail: OutgoingMail) -> dict[str, Any]:
        body: dict[str, Any] = {
            "personalizations": [{"to": [{"email": mail.to_email, "name": mail.to_name}]}],
            "from": {"email": mail.from_email, "name": mail.from_name},
            "subject": mail.subject,
            "content": [
                {"type": "text/plain", "value": mail.text},
                {"type": "text/html", "value": mail.html},
            ],
            # Comes back in every event webhook, and is what the activity search finds.
            "custom_args": {"send_id": str(mail.message_id)},
            "headers": {"Message-Id": mail.rfc_message_id},
        }
        if mail.reply_to:
            body["reply_to"] = {"email": mail.reply_to}
        if mail.attachments:
            body["attachments"] = [
                {
                    "content": base64.b64encode(a.content).decode(),
                    "type": a.content_type,
                    "filename": a.filename,
                    "disposition": "attachment",
                }
                for a in mail.attachments
            ]
        return body

    def _send(self, body: dict[str, Any]) -> str:
        try:
            response = self.client.client.mail.send.post(request_body=body)
        except sendgrid_errors.HTTPError as exc:
            raise _from_http_status(self.name, exc.status_code, str(exc.body)) from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                raise ProviderInDoubt("sendgrid gave no answer (timeout)") from None
            # urllib wraps a failure to connect; nothing left us.
            raise ProviderRejected("sendgrid unreachable") from None
        except (TimeoutError, ConnectionError, OSError) as exc:
            raise ProviderInDoubt(f"sendgrid gave no answer ({type(exc).__name__})") from None
        return str(response.headers.get("X-Message-Id") or "")

    async def send(self, mail: OutgoingMail) -> str:
        return await asyncio.to_thread(self._send, self._body(mail))

    def _lookup(self, message_id: uuid.UUID) -> str | None:
        query = {"query": f"unique_args['send_id']=\"{message_id}\"", "limit": 1}
        try:
            response = self.client.client.messages.get(query_params=query)
        except (sendgrid_errors.HTTPError, urllib.error.URLError, OSError) as exc:
            raise LookupUnavailable(f"sendgrid search failed ({type(exc).__name__})") from None
        found = json.loads(response.body or b"{}").get("messages") or []
        return str(found[0]["msg_id"]) if found else None

    async def lookup(self, message_id: uuid.UUID) -> str | None:
        return await asyncio.to_thread(self._lookup, message_id)


# --- Mailgun --------------------------------------------------------------------------------


class MailgunProvider:
    """Mailgun's messages API: a multipart form, HTTP basic auth as `api`."""

    name = "mailgun"
    can_lookup = True

    def __init__(self, settings: EmailSettings, http: httpx.AsyncClient) -> None:
        self.http = http
        self.base = f"{settings.mailgun_url.rstrip('/')}/v3/{settings.mailgun_domain}"
        self.auth = ("api", settings.mailgun_api_key.get_secret_value())
        self.timeout = settings.provider_timeout_seconds
        # The domain of our Message-Id headers (OutgoingMail.rfc_message_id).
        self.id_domain = settings.from_email.rsplit("@", 1)[-1]

    async def send(self, mail: OutgoingMail) -> str:
        data = {
            "from": formataddr((mail.from_name, mail.from_email)),
            "to": formataddr((mail.to_name, mail.to_email)),
            "subject": mail.subject,
            "text": mail.text,
            "html": mail.html,
            # Mailgun keeps a Message-Id given as a header; its events API finds it by it.
            "h:Message-Id": mail.rfc_message_id,
            "v:send_id": str(mail.message_id),
        }
        if mail.reply_to:
            data["h:Reply-To"] = mail.reply_to
        files = [("attachment", (a.filename, a.content, a.content_type)) for a in mail.attachments]
        try:
            response = await self.http.post(
                f"{self.base}/messages",
                data=data,
                files=files or None,
                auth=self.auth,
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            raise _from_httpx_error(self.name, exc) from None
        if response.status_code != 200:
            raise _from_http_status(self.name, response.status_code, response.text)
        return str(response.json().get("id", ""))

    async def lookup(self, message_id: uuid.UUID) -> str | None:
        params = {"event": "accepted", "message-id": f"{message_id}@{self.id_domain}", "limit": "1"}
        try:
            response = await self.http.get(
                f"{self.base}/events", params=params, auth=self.auth, timeout=self.timeout
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise LookupUnavailable(f"mailgun events failed ({type(exc).__name__})") from None
        items = response.json().get("items") or []
        return str(items[0]["message"]["headers"]["message-id"]) if items else None


# --- SparkPost ------------------------------------------------------------------------------


class SparkPostProvider:
    """SparkPost's transmissions API; the campaign id carries our message id."""

    name = "sparkpost"
    can_lookup = True

    def __init__(self, settings: EmailSettings, http: httpx.AsyncClient) -> None:
        self.http = http
        self.base = f"{settings.sparkpost_url.rstrip('/')}/api/v1"
        self.headers = {"Authorization": settings.sparkpost_api_key.get_secret_value()}
        self.timeout = settings.provider_timeout_seconds

    @staticmethod
    def campaign(message_id: uuid.UUID) -> str:
        return f"send-{message_id}"

    async def send(self, mail: OutgoingMail) -> str:
        content: dict[str, Any] = {
            "from": {"email": mail.from_email, "name": mail.from_name},
            "subject": mail.subject,
            "text": mail.text,
            "html": mail.html,
            "headers": {"Message-Id": mail.rfc_message_id},
            "attachments": [
                {
                    "name": a.filename,
                    "type": a.content_type,
                    "data": base64.b64encode(a.content).decode(),
                }
                for a in mail.attachments
            ],
        }
        if mail.reply_to:
            content["reply_to"] = mail.reply_to
        body = {
            "campaign_id": self.campaign(mail.message_id),
            "metadata": {"send_id": str(mail.message_id)},
            "recipients": [{"address": {"email": mail.to_email, "name": mail.to_name}}],
            "content": content,
        }
        try:
            response = await self.http.post(
                f"{self.base}/transmissions",
                json=body,
                headers=self.headers,
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            raise _from_httpx_error(self.name, exc) from None
        if response.status_code != 200:
            raise _from_http_status(self.name, response.status_code, response.text)
        return str(response.json()["results"]["id"])

    async def lookup(self, message_id: uuid.UUID) -> str | None:
        params = {"events": "injection", "campaigns": self.campaign(message_id)}
        try:
            response = await self.http.get(
                f"{self.base}/events/message",
                params=params,
                headers=self.headers,
                timeout=self.timeout,
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise LookupUnavailable(f"sparkpost events failed ({type(exc).__name__})") from None
        results = response.json().get("results") or []
        return str(results[0]["transmission_id"]) if results else None


# --- Amazon SES -----------------------------------------------------------------------------


class SesProvider:
    """Amazon SES's SendRawEmail through boto3 (blocking, so in a thread)."""

    name = "ses"
    can_lookup = False

    def __init__(self, settings: EmailSettings) -> None:
        timeout = settings.provider_timeout_seconds
        self.client = boto3.client(
            "ses",
            region_name=settings.ses_region,
            endpoint_url=settings.ses_endpoint_url or None,
            aws_access_key_id=settings.aws_access_key_id.get_secret_value(),
            aws_secret_access_key=settings.aws_secret_access_key.get_secret_value(),
            # No retries inside boto3: a retried SendRawEmail after a lost answer could send
            # twice, and failover is ours to decide.
            config=BotoConfig(
                connect_timeout=timeout, read_timeout=timeout, retries={"total_max_attempts": 1}
            ),
        )

    def _send(self, raw: bytes) -> str:
        try:
            answer = self.client.send_raw_email(RawMessage={"Data": raw})
        except ClientError as exc:
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500))
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in {"Throttling", "MessageRejected"} and status < 500:
                # Sending quota or rate, and unverified senders: SES's side, not the mail's.
                raise ProviderRejected(f"ses refused ({code})") from None
            raise _from_http_status(self.name, status, code) from None
        except (EndpointConnectionError, ConnectTimeoutError):
            raise ProviderRejected("ses unreachable") from None
        except BotoCoreError as exc:
            raise ProviderInDoubt(f"ses gave no answer ({type(exc).__name__})") from None
        return str(answer["MessageId"])

    async def send(self, mail: OutgoingMail) -> str:
        return await asyncio.to_thread(self._send, mail.mime().as_bytes())

    async def lookup(self, message_id: uuid.UUID) -> str | None:
        raise LookupUnavailable("ses cannot be asked about a message")


# --- SMTP -----------------------------------------------------------------------------------


class SmtpProvider:
    """Plain SMTP through aiosmtplib: the local sink in development."""

    name = "smtp"
    can_lookup = False

    def __init__(self, settings: EmailSettings) -> None:
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.timeout = settings.provider_timeout_seconds

    async def send(self, mail: OutgoingMail) -> str:
        message = mail.mime()
        try:
            await aiosmtplib.send(message, hostname=self.host, port=self.port, timeout=self.timeout)
        except aiosmtplib.SMTPConnectError:
            raise ProviderRejected("smtp unreachable") from None
        except aiosmtplib.SMTPRecipientsRefused:
            raise MessageRefused("smtp refused the recipient") from None
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500:
                raise MessageRefused(f"smtp refused the message ({exc.code})") from None
            raise ProviderRejected(f"smtp answered {exc.code}") from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise ProviderInDoubt(f"smtp gave no answer ({type(exc).__name__})") from None
        return mail.rfc_message_id

    async def lookup(self, message_id: uuid.UUID) -> str | None:
        raise LookupUnavailable("smtp cannot be asked about a message")


def create_providers(settings: EmailSettings, http: httpx.AsyncClient) -> dict[str, EmailProvider]:
    """The configured providers by name, in the failover order."""
    made: dict[str, EmailProvider] = {}
    for name in settings.provider_order:
        if name == "sendgrid":
            made[name] = SendGridProvider(settings)
        elif name == "mailgun":
            made[name] = MailgunProvider(settings, http)
        elif name == "sparkpost":
            made[name] = SparkPostProvider(settings, http)
        elif name == "ses":
            made[name] = SesProvider(settings)
        elif name == "smtp":
            made[name] = SmtpProvider(settings)
    return made
