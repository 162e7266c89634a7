"""Delivery webhooks: each verified before anything is read from it, then parsed into
reports. A forged, altered, stale or replayed webhook raises WebhookRefused (401) and
changes nothing.

- SendGrid's signed event webhook: ECDSA P-256 over SHA-256 of the timestamp header followed
  by the raw body, checked with the public key from SendGrid's settings; the timestamp must
  be recent, and each event's `sg_event_id` is applied once.
- Mailgun: HMAC-SHA256 of timestamp + token with the webhook signing key; the timestamp must
  be recent and the token unused (a replay reuses it).
- Amazon SES through SNS: the SNS message signature (RSA, SHA1 for SignatureVersion 1,
  SHA256 for 2) over SNS's canonical string, checked with the certificate at
  SigningCertURL, which is fetched only from allowed URL prefixes (AWS's own host in
  production); the topic must be ours, the message recent, and its MessageId unused.
"""

import base64
import binascii
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from mailer.config import EmailSettings
from mailer.exceptions import WebhookRefused
from mailer.models import MessageStatus
from mailer.service import DeliveryReport

SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"


def _recent(timestamp: str, max_age: int) -> None:
    try:
        at = int(timestamp)
    except (TypeError, ValueError):
        raise WebhookRefused("The timestamp is missing or not a number") from None
    if abs(time.time() - at) > max_age:
        raise WebhookRefused("The timestamp is too old (or in the future): a replay")


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError):
        return None


# --- SendGrid -------------------------------------------------------------------------------

SENDGRID_STATUSES = {
    "processed": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "bounce": MessageStatus.BOUNCED,
    "dropped": MessageStatus.BOUNCED,
}


def verify_sendgrid(
    settings: EmailSettings, body: bytes, signature: str | None, timestamp: str | None
) -> list[DeliveryReport]:
    if not settings.sendgrid_webhook_public_key:
        raise WebhookRefused("SendGrid webhooks are not configured")
    if not signature or not timestamp:
        raise WebhookRefused("The signature or timestamp header is missing")
    _recent(timestamp, settings.webhook_max_age_seconds)
    try:
        key = serialization.load_der_public_key(
            base64.b64decode(settings.sendgrid_webhook_public_key)
        )
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ValueError("the configured key is not an ECDSA public key")
        key.verify(
            base64.b64decode(signature), timestamp.encode() + body, ec.ECDSA(hashes.SHA256())
        )
    except (InvalidSignature, binascii.Error, ValueError):
        raise WebhookRefused("The signature does not match the body") from None
    try:
        events = json.loads(body)
    except ValueError:
        raise WebhookRefused("The body is not JSON") from None
    if not isinstance(events, list):
        raise WebhookRefused("The body is not a list of events")
    reports = []
    for event in events:
        if not isinstance(event, dict) or event.get("event") not in SENDGRID_STATUSES:
            continue
        provider_id = str(event.get("sg_message_id") or "").split(".", 1)[0] or None
        reports.append(
            DeliveryReport(
                provider="sendgrid",
                receipt_id=str(event.get("sg_event_id") or ""),
                status=SENDGRID_STATUSES[str(event["event"])],
                send_id=_uuid_or_none(event.get("send_id")),
                provider_message_id=provider_id,
                detail=str(event.get("reason") or "")[:200] or None,
            )
        )
    return [r for r in reports if r.receipt_id]


# --- Mailgun --------------------------------------------------------------------------------


def mailgun_signature(signing_key: str, timestamp: str, token: str) -> str:
    return hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def verify_mailgun(settings: EmailSettings, body: bytes) -> tuple[str, list[DeliveryReport]]:
    """The reports and the signature's token, which the caller records so it is used once."""
    try:
        payload = json.loads(body)
        signed = payload["signature"]
        timestamp, token, signature = (
            str(signed["timestamp"]),
            str(signed["token"]),
            str(signed["signature"]),
        )
        data = payload["event-data"]
    except (ValueError, KeyError, TypeError):
        raise WebhookRefused("The body is not a signed Mailgun webhook") from None
    expected = mailgun_signature(
        settings.mailgun_webhook_signing_key.get_secret_value(), timestamp, token
    )
    if not hmac.compare_digest(expected, signature):
        raise WebhookRefused("The signature does not match")
    _recent(timestamp, settings.webhook_max_age_seconds)
    if not isinstance(data, dict):
        return token, []
    event = data.get("event")
    status = None
    if event == "accepted":
        status = MessageStatus.SENT
    elif event == "delivered":
        status = MessageStatus.DELIVERED
    elif event == "failed" and data.get("severity") == "permanent":
        status = MessageStatus.BOUNCED
    if status is None:
        return token, []
    headers = (data.get("message") or {}).get("headers") or {}
    variables = data.get("user-variables") or {}
    reason = (data.get("delivery-status") or {}).get("description")
    report = DeliveryReport(
        provider="mailgun",
        receipt_id=str(data.get("id") or token),
        status=status,
        send_id=_uuid_or_none(variables.get("send_id")),
        provider_message_id=headers.get("message-id"),
        detail=str(reason)[:200] if reason else None,
    )
    return token, [report]


# --- Amazon SES through SNS -----------------------------------------------------------------

SNS_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}


def sns_string_to_sign(message: dict[str, Any]) -> bytes:
    """SNS's canonical form: each signed field present, as `name\\nvalue\\n`, in order."""
    fields = SNS_SIGNED_FIELDS[str(message["Type"])]
    return "".join(
        f"{name}\n{message[name]}\n" for name in fields if message.get(name) is not None
    ).encode()


class SnsVerifier:
    """Verifies SNS messages; certificates are fetched once per URL and kept."""

    def __init__(self, settings: EmailSettings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.http = http
        self.keys: dict[str, rsa.RSAPublicKey] = {}

    def allowed(self, url: str) -> bool:
        return any(url.startswith(prefix) for prefix in self.settings.certificate_url_prefixes)

    async def _key(self, url: str) -> rsa.RSAPublicKey:
        if not self.allowed(url) or not url.endswith(".pem"):
            raise WebhookRefused("The signing certificate is not from SNS")
        if url not in self.keys:
            try:
                response = await self.http.get(url, timeout=5)
                response.raise_for_status()
                certificate = x509.load_pem_x509_certificate(response.content)
            except (httpx.HTTPError, ValueError):
                raise WebhookRefused("The signing certificate could not be read") from None
            key = certificate.public_key()
            if not isinstance(key, rsa.RSAPublicKey):
                raise WebhookRefused("The signing certificate is not an RSA one")
            self.keys[url] = key
        return self.keys[url]

    async def confirm(self, message: dict[str, Any]) -> None:
        """Follow a verified subscription's confirmation link, if it points at SNS."""
        url = str(message.get("SubscribeURL") or "")
        if not self.allowed(url):
            raise WebhookRefused("The confirmation link is not SNS's")
        try:
            response = await self.http.get(url, timeout=5)
            response.raise_for_status()
        except httpx.HTTPError:
            raise WebhookRefused("The subscription could not be confirmed") from None

    async def verify(self, body: bytes) -> dict[str, Any]:
        try:
            message = json.loads(body)
            kind = str(message["Type"])
            signature = base64.b64decode(message["Signature"])
            version = str(message["SignatureVersion"])
            cert_url = str(message["SigningCertURL"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise WebhookRefused("The body is not a signed SNS message") from None
        if kind not in SNS_SIGNED_FIELDS:
            raise WebhookRefused("Not a message type this endpoint takes")
        if message.get("TopicArn") != self.settings.sns_topic_arn:
            raise WebhookRefused("The message is not from our topic")
        algorithm: hashes.HashAlgorithm
        if version == "1":
            algorithm = hashes.SHA1()  # noqa: S303 - SNS's SignatureVersion 1 is SHA1
        elif version == "2":
            algorithm = hashes.SHA256()
        else:
            raise WebhookRefused("Unknown signature version")
        key = await self._key(cert_url)
        try:
            key.verify(signature, sns_string_to_sign(message), padding.PKCS1v15(), algorithm)
        except (InvalidSignature, KeyError):
            raise WebhookRefused("The signature does not match the message") from None
        try:
            sent_at = datetime.fromisoformat(str(message["Timestamp"]).replace("Z", "+00:00"))
        except ValueError:
            raise WebhookRefused("The timestamp is not a date") from None
        age = abs((datetime.now(UTC) - sent_at).total_seconds())
        if age > self.settings.webhook_max_age_seconds:
            raise WebhookRefused("The message is too old: a replay")
        return dict(message)


def ses_reports(message: dict[str, Any]) -> list[DeliveryReport]:
    """The SES event inside a verified SNS notification."""
    try:
        event = json.loads(str(message["Message"]))
    except (ValueError, KeyError):
        return []
    kind = event.get("notificationType") or event.get("eventType")
    mail = event.get("mail") or {}
    status = None
    detail = None
    if kind == "Delivery":
        status = MessageStatus.DELIVERED
    elif kind == "Bounce" and (event.get("bounce") or {}).get("bounceType") == "Permanent":
        status = MessageStatus.BOUNCED
        detail = "permanent bounce"
    elif kind == "Send":
        status = MessageStatus.SENT
    if status is None:
        return []
    send_id = None
    for header in mail.get("headers") or []:
        if isinstance(header, dict) and header.get("name") == "X-Ledgerline-Send-Id":
            send_id = _uuid_or_none(header.get("value"))
    return [
        DeliveryReport(
            provider="ses",
            receipt_id=str(message["MessageId"]),
            status=status,
            send_id=send_id,
            provider_message_id=mail.get("messageId"),
            detail=detail,
        )
    ]
