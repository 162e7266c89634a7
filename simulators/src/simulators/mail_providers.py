"""The HTTP email providers in one small app: SendGrid, Mailgun and SparkPost, each speaking
its real request and response shapes, with faults on command and signed webhooks back.

- SendGrid v3: `POST /v3/mail/send` (Bearer key; 202, `X-Message-Id`), and the Email
  Activity search `GET /v3/messages?query=unique_args['send_id']="..."`.
- Mailgun: `POST /v3/<domain>/messages` (multipart form, basic auth `api:<key>`; 200
  `{"id", "message": "Queued. Thank you."}`), and `GET /v3/<domain>/events?message-id=`.
- SparkPost: `POST /api/v1/transmissions` (`Authorization: <key>`; 200 `{"results": ...}`),
  and `GET /api/v1/events/message?campaigns=`.
- Amazon SES delivery events as SNS would post them, signed with a key whose certificate is
  served at `/sns/certificate.pem` (SES itself is moto's server).

`/_control` (see docs/email.md): the accepted messages and their counts per provider and
send id, faults (`error` 500, `timeout`: accept then hold the answer, `hang`: hold and never
accept, `unauthorized` 401, `rate_limited` 429, `bounce` a recipient), a webhook target the
app reports every accepted message to (signed, as the provider would), and one-off webhooks.
Run it with `python -m simulators.mail_providers --port 9200`.
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Literal
from urllib.parse import parse_qsl

import httpx
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

logger = logging.getLogger("simulators.mail_providers")

Provider = Literal["sendgrid", "mailgun", "sparkpost"]
FaultMode = Literal["error", "timeout", "hang", "unauthorized", "rate_limited", "bounce"]
DEFAULT_DELAY = 30.0
MAILGUN_SIGNING_KEY = "key-simulated-mailgun-signing"


class FaultRequest(BaseModel):
    provider: Provider
    mode: FaultMode
    # How many requests it applies to; none: until cleared.
    times: int | None = None
    delay: float | None = None
    recipient: str | None = None  # `bounce`: only this address


class WebhookTarget(BaseModel):
    url: str | None  # the email service's /webhooks base; null stops reporting
    topic_arn: str = "arn:aws:sns:us-east-1:123456789012:ledgerline-ses-events"


class OneWebhook(BaseModel):
    provider: Literal["sendgrid", "mailgun", "ses"]
    url: str
    send_id: str | None = None
    provider_message_id: str | None = None
    event: Literal["processed", "delivered", "bounce"] = "delivered"
    # Sign with another key, or alter the body after signing: a forgery for tests.
    forge: Literal["none", "wrong_key", "altered", "stale"] = "none"
    topic_arn: str = "arn:aws:sns:us-east-1:123456789012:ledgerline-ses-events"


@dataclass
class Fault:
    id: str
    spec: FaultRequest
    remaining: int | None


@dataclass
class Accepted:
    provider: str
    send_id: str
    provider_message_id: str
    recipient: str
    subject: str
    attachment_bytes: int
    campaign: str = ""
    accepted_at: float = field(default_factory=time.time)


class Signer:
    """The keys webhooks are signed with: SendGrid's ECDSA pair, Mailgun's HMAC key, and
    an RSA key with a self-signed certificate standing in for SNS's."""

    def __init__(self) -> None:
        self.sendgrid_key = ec.generate_private_key(ec.SECP256R1())
        self.mailgun_key = MAILGUN_SIGNING_KEY
        self.sns_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.simulated")])
        now = datetime.now(UTC)
        self.sns_certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.sns_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365))
            .sign(self.sns_key, hashes.SHA256())
        )

    @property
    def sendgrid_public_key(self) -> str:
        der = self.sendgrid_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()


class MailProviders:
    def __init__(self) -> None:
        self.accepted: list[Accepted] = []
        self.faults: list[Fault] = []
        self.target: WebhookTarget = WebhookTarget(url=None)
        self.signer = Signer()
        self.base_url = ""
        self.tasks: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None

    @property
    def http(self) -> httpx.AsyncClient:
        """One client for every webhook posted: a client per post would cost its TLS set-up
        each time, and slow down the simulated providers under load."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10)
        return self._http

    def take_fault(self, provider: str, recipient: str) -> Fault | None:
        for fault in self.faults:
            if fault.spec.provider != provider:
                continue
            if fault.spec.recipient and fault.spec.recipient != recipient:
                continue
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.faults.remove(fault)
            return fault
        return None

    def find(self, provider: str, send_id: str) -> Accepted | None:
        for message in self.accepted:
            if message.provider == provider and message.send_id == send_id:
                return message
        return None


def _error(status: int, provider: str) -> JSONResponse:
    """Each provider's error body shape."""
    if provider == "sendgrid":
        return JSONResponse({"errors": [{"message": f"simulated {status}"}]}, status)
    if provider == "mailgun":
        return JSONResponse({"message": f"simulated {status}"}, status)
    return JSONResponse({"errors": [{"message": f"simulated {status}", "code": "1902"}]}, status)


async def _apply_fault(fault: Fault | None, provider: str) -> JSONResponse | None:
    """A fault's answer, or None to go on (accept)."""
    if fault is None:
        return None
    mode = fault.spec.mode
    if mode == "error":
        return _error(500, provider)
    if mode == "unauthorized":
        return _error(401, provider)
    if mode == "rate_limited":
        return _error(429, provider)
    if mode == "hang":
        await asyncio.sleep(fault.spec.delay or DEFAULT_DELAY)
        return _error(503, provider)
    return None  # timeout and bounce: accepted (timeout holds the answer afterwards)


def create_app() -> FastAPI:
    app = FastAPI(title="Email providers simulator", docs_url=None, redoc_url=None)
    state = MailProviders()
    app.state.providers = state

    async def accept(
        provider: Literal["sendgrid", "mailgun", "sparkpost"],
        fault: Fault | None,
        message: Accepted,
    ) -> None:
        state.accepted.append(message)
        logger.info("accepted %s send_id=%s", provider, message.send_id)
        # SparkPost's webhooks are not taken by the email service yet: not reported.
        if state.target.url and provider != "sparkpost":
            bounced = fault is not None and fault.spec.mode == "bounce"
            task = asyncio.create_task(
                _report(state, provider, message, "bounce" if bounced else "delivered")
            )
            state.tasks.add(task)
            task.add_done_callback(state.tasks.discard)
        if fault is not None and fault.spec.mode == "timeout":
            await asyncio.sleep(fault.spec.delay or DEFAULT_DELAY)

    # --- SendGrid ---------------------------------------------------------------------------

    @app.post("/v3/mail/send")
    async def sendgrid_send(request: Request) -> Response:
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return _error(401, "sendgrid")
        try:
            body = json.loads(await request.body())
            to = body["personalizations"][0]["to"][0]["email"]
            subject = str(body["subject"])
            if not body["from"]["email"] or not body["content"]:
                raise ValueError("from and content are required")
        except (ValueError, KeyError, IndexError, TypeError):
            return _error(400, "sendgrid")
        fault = state.take_fault("sendgrid", to)
        answer = await _apply_fault(fault, "sendgrid")
        if answer is not None:
            return answer
        send_id = str((body.get("custom_args") or {}).get("send_id", ""))
        size = sum(len(a.get("content", "")) * 3 // 4 for a in body.get("attachments") or [])
        message_id = secrets.token_urlsafe(16)
        await accept(
            "sendgrid", fault, Accepted("sendgrid", send_id, message_id, to, subject, size)
        )
        return Response(status_code=202, headers={"X-Message-Id": message_id})

    @app.get("/v3/messages")
    async def sendgrid_activity(query: str = "", limit: int = 10) -> JSONResponse:
        found = re.search(r"unique_args\['send_id'\]=\"([^\"]+)\"", query)
        matches = [
            m
            for m in state.accepted
            if m.provider == "sendgrid" and found and m.send_id == found[1]
        ]
        return JSONResponse(
            {
                "messages": [
                    {
                        "msg_id": m.provider_message_id,
                        "to_email": m.recipient,
                        "status": "delivered",
                    }
                    for m in matches[:limit]
                ]
            }
        )

    # --- Mailgun ----------------------------------------------------------------------------

    @app.post("/v3/{domain}/messages")
    async def mailgun_send(domain: str, request: Request) -> JSONResponse:
        if not request.headers.get("authorization", "").startswith("Basic "):
            return _error(401, "mailgun")
        raw = await request.body()
        content_type = request.headers.get("content-type", "")
        parsed = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw
        )
        fields: dict[str, str] = {}
        attachment_bytes = 0
        for part in parsed.iter_parts() if parsed.is_multipart() else []:
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str):
                continue
            payload = part.get_payload(decode=True) or b""
            if name == "attachment":
                attachment_bytes += len(payload)
            else:
                fields[name] = bytes(payload).decode()
        if not parsed.is_multipart():
            fields = dict(parse_qsl(raw.decode(errors="replace")))
        to, subject = fields.get("to"), fields.get("subject")
        if not to or not subject or not fields.get("from"):
            return _error(400, "mailgun")
        address = to.rsplit("<", 1)[-1].rstrip(">")
        fault = state.take_fault("mailgun", address)
        answer = await _apply_fault(fault, "mailgun")
        if answer is not None:
            return answer
        message_id = fields.get("h:Message-Id", "").strip("<>") or f"{uuid.uuid4()}@{domain}"
        send_id = fields.get("v:send_id", "")
        await accept(
            "mailgun",
            fault,
            Accepted("mailgun", send_id, message_id, address, subject, attachment_bytes),
        )
        return JSONResponse({"id": f"<{message_id}>", "message": "Queued. Thank you."})

    @app.get("/v3/{domain}/events")
    async def mailgun_events(domain: str, request: Request) -> JSONResponse:
        wanted = request.query_params.get("message-id", "").strip("<>")
        items = [
            {
                "event": "accepted",
                "id": secrets.token_urlsafe(8),
                "timestamp": m.accepted_at,
                "message": {"headers": {"message-id": m.provider_message_id}},
                "user-variables": {"send_id": m.send_id},
            }
            for m in state.accepted
            if m.provider == "mailgun" and m.provider_message_id == wanted
        ]
        return JSONResponse({"items": items, "paging": {}})

    # --- SparkPost --------------------------------------------------------------------------

    @app.post("/api/v1/transmissions")
    async def sparkpost_send(request: Request) -> JSONResponse:
        if not request.headers.get("authorization"):
            return _error(401, "sparkpost")
        try:
            body = json.loads(await request.body())
            to = body["recipients"][0]["address"]["email"]
            subject = str(body["content"]["subject"])
            if not body["content"]["from"]:
                raise ValueError("from is required")
        except (ValueError, KeyError, IndexError, TypeError):
            return _error(400, "sparkpost")
        fault = state.take_fault("sparkpost", to)
        answer = await _apply_fault(fault, "sparkpost")
        if answer is not None:
            return answer
        send_id = str((body.get("metadata") or {}).get("send_id", ""))
        size = sum(
            len(a.get("data", "")) * 3 // 4 for a in body["content"].get("attachments") or []
        )
        transmission_id = str(secrets.randbelow(10**17))
        campaign = str(body.get("campaign_id", ""))
        accepted = Accepted("sparkpost", send_id, transmission_id, to, subject, size, campaign)
        await accept("sparkpost", fault, accepted)
        return JSONResponse(
            {
                "results": {
                    "total_rejected_recipients": 0,
                    "total_accepted_recipients": 1,
                    "id": transmission_id,
                }
            }
        )

    @app.get("/api/v1/events/message")
    async def sparkpost_events(campaigns: str = "", events: str = "") -> JSONResponse:
        wanted = set(campaigns.split(",")) if campaigns else set()
        results = [
            {
                "type": "injection",
                "transmission_id": m.provider_message_id,
                "campaign_id": m.campaign,
                "rcpt_to": m.recipient,
            }
            for m in state.accepted
            if m.provider == "sparkpost" and m.campaign in wanted
        ]
        return JSONResponse({"results": results, "total_count": len(results), "links": {}})

    # --- SNS --------------------------------------------------------------------------------

    @app.get("/sns/certificate.pem")
    async def sns_certificate() -> Response:
        pem = state.signer.sns_certificate.public_bytes(serialization.Encoding.PEM)
        return Response(pem, media_type="application/x-pem-file")

    # --- control ----------------------------------------------------------------------------

    @app.get("/_control/keys")
    async def keys(request: Request) -> dict[str, str]:
        """What the email service is configured with to verify this simulator's webhooks."""
        return {
            "sendgrid_public_key": state.signer.sendgrid_public_key,
            "mailgun_signing_key": state.signer.mailgun_key,
            "sns_certificate_url": f"{str(request.base_url).rstrip('/')}/sns/certificate.pem",
        }

    @app.get("/_control/messages")
    async def messages() -> list[dict[str, Any]]:
        return [
            {
                "provider": m.provider,
                "send_id": m.send_id,
                "provider_message_id": m.provider_message_id,
                "recipient": m.recipient,
                "subject": m.subject,
                "attachment_bytes": m.attachment_bytes,
            }
            for m in state.accepted
        ]

    @app.get("/_control/counts")
    async def counts() -> dict[str, dict[str, int]]:
        """Accepted messages per provider and send id: more than 1 anywhere is a double send."""
        by: dict[str, Counter[str]] = {}
        for m in state.accepted:
            by.setdefault(m.provider, Counter())[m.send_id] += 1
        return {provider: dict(counter) for provider, counter in by.items()}

    @app.delete("/_control/messages", status_code=204)
    async def clear_messages() -> None:
        state.accepted.clear()

    @app.post("/_control/faults", status_code=201)
    async def add_fault(spec: FaultRequest) -> dict[str, str]:
        fault = Fault(secrets.token_hex(4), spec, spec.times)
        state.faults.append(fault)
        return {"id": fault.id}

    @app.delete("/_control/faults", status_code=204)
    async def clear_faults(provider: str | None = None) -> None:
        state.faults[:] = [f for f in state.faults if provider and f.spec.provider != provider]

    @app.put("/_control/webhook-target", status_code=204)
    async def set_target(target: WebhookTarget) -> None:
        state.target = target

    @app.post("/_control/webhooks")
    async def send_webhook(spec: OneWebhook, request: Request) -> dict[str, Any]:
        """Post one signed (or forged) webhook to the email service; its answer comes back."""
        base = str(request.base_url).rstrip("/")
        body, headers = build_webhook(state.signer, spec, base)
        answer = await state.http.post(spec.url, content=body, headers=headers)
        return {
            "status": answer.status_code,
            "body": answer.text,
            "sent": body.decode(),
            "headers": headers,
        }

    @app.post("/_control/replay")
    async def replay(request: Request) -> dict[str, Any]:
        """Post exactly what was sent before (body and headers), as an attacker replays it."""
        spec = await request.json()
        answer = await state.http.post(
            spec["url"], content=spec["body"].encode(), headers=spec["headers"]
        )
        return {"status": answer.status_code, "body": answer.text}

    return app


def build_webhook(signer: Signer, spec: OneWebhook, base_url: str) -> tuple[bytes, dict[str, str]]:
    """The body and headers the provider would post for one event."""
    now = int(time.time())
    if spec.forge == "stale":
        now -= 3600
    if spec.provider == "sendgrid":
        event = {
            "email": "recipient@example.com",
            "timestamp": now,
            "event": spec.event,
            "sg_event_id": secrets.token_urlsafe(12),
            "sg_message_id": f"{spec.provider_message_id or ''}.filter0001",
            "send_id": spec.send_id,
        }
        if spec.event == "bounce":
            event["reason"] = "550 5.1.1 The email account does not exist"
        body = json.dumps([event]).encode()
        timestamp = str(now)
        key = (
            signer.sendgrid_key
            if spec.forge != "wrong_key"
            else ec.generate_private_key(ec.SECP256R1())
        )
        signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        if spec.forge == "altered":
            # The event changed after signing, as a tamperer would.
            other = b'"bounce"' if spec.event != "bounce" else b'"delivered"'
            body = body.replace(f'"{spec.event}"'.encode(), other)
        headers = {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        }
        return body, headers
    if spec.provider == "mailgun":
        token = secrets.token_hex(25)
        signing_key = signer.mailgun_key if spec.forge != "wrong_key" else "not-the-key"
        hex_signature = hmac.new(
            signing_key.encode(), f"{now}{token}".encode(), hashlib.sha256
        ).hexdigest()
        data: dict[str, Any] = {
            "id": secrets.token_urlsafe(12),
            "timestamp": now,
            "event": "failed" if spec.event == "bounce" else spec.event,
            "message": {"headers": {"message-id": spec.provider_message_id}},
            "user-variables": {"send_id": spec.send_id},
        }
        if spec.event == "bounce":
            data["severity"] = "permanent"
            data["delivery-status"] = {"description": "No such mailbox"}
        if spec.event == "processed":
            data["event"] = "accepted"
        payload = {
            "signature": {"timestamp": str(now), "token": token, "signature": hex_signature},
            "event-data": data,
        }
        if spec.forge == "altered":
            # Mailgun signs only timestamp + token, not the event: what can be altered and
            # caught is a signed field.
            payload["signature"]["timestamp"] = str(now + 1)
        return json.dumps(payload).encode(), {"Content-Type": "application/json"}
    # SES through SNS
    ses_event: dict[str, Any] = {
        "notificationType": "Bounce" if spec.event == "bounce" else "Delivery",
        "mail": {
            "messageId": spec.provider_message_id,
            "headers": [{"name": "X-Ledgerline-Send-Id", "value": spec.send_id}],
        },
    }
    if spec.event == "bounce":
        ses_event["bounce"] = {"bounceType": "Permanent"}
    sent_at = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    message = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": spec.topic_arn,
        "Message": json.dumps(ses_event),
        "Timestamp": sent_at,
        "SignatureVersion": "2",
        "SigningCertURL": f"{base_url}/sns/certificate.pem",
    }
    canonical = "".join(
        f"{name}\n{message[name]}\n"
        for name in ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
        if name in message
    ).encode()
    key_rsa = (
        signer.sns_key
        if spec.forge != "wrong_key"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    message["Signature"] = base64.b64encode(
        key_rsa.sign(canonical, padding.PKCS1v15(), hashes.SHA256())
    ).decode()
    if spec.forge == "altered":
        swap = ('"Bounce"', '"Delivery"') if spec.event == "bounce" else ('"Delivery"', '"Bounce"')
        message["Message"] = message["Message"].replace(*swap)
    return json.dumps(message).encode(), {"Content-Type": "text/plain; charset=UTF-8"}


async def _report(
    state: MailProviders,
    provider: Literal["sendgrid", "mailgun"],
    message: Accepted,
    event: Literal["delivered", "bounce"],
) -> None:
    """Tell the email service about an accepted message, as the provider's webhook would."""
    await asyncio.sleep(0.05)
    target = state.target
    if not target.url:
        return
    spec = OneWebhook(
        provider=provider,
        url=f"{target.url.rstrip('/')}/{provider}",
        send_id=message.send_id,
        provider_message_id=message.provider_message_id,
        event=event,
        topic_arn=target.topic_arn,
    )
    body, headers = build_webhook(state.signer, spec, state.base_url)
    for attempt in range(5):
        try:
            answer = await state.http.post(spec.url, content=body, headers=headers)
            if answer.status_code < 500:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.5 * (attempt + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description="SendGrid, Mailgun and SparkPost simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9200)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s %(message)s")
    app = create_app()
    app.state.providers.base_url = f"http://{args.host}:{args.port}"
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=1,
    )


if __name__ == "__main__":
    main()
