"""The email providers' simulator speaks each provider's shapes, insists on credentials,
fails on command, and counts what it accepted; the SMTP sink counts by send id."""

import smtplib
import uuid
from collections.abc import Iterator
from email.message import EmailMessage

import httpx
import pytest

from simulators.mail_testing import MailProvidersServer, SmtpSinkServer


@pytest.fixture(scope="module")
def providers() -> Iterator[MailProvidersServer]:
    with MailProvidersServer() as server:
        yield server


def sendgrid_body(send_id: str) -> dict[str, object]:
    return {
        "personalizations": [{"to": [{"email": "a@example.com"}]}],
        "from": {"email": "invoices@example.com"},
        "subject": "Invoice",
        "content": [{"type": "text/plain", "value": "hi"}],
        "custom_args": {"send_id": send_id},
    }


def test_sendgrid_takes_a_message_with_a_key_and_finds_it_again(
    providers: MailProvidersServer,
) -> None:
    send_id = str(uuid.uuid4())
    with httpx.Client(base_url=providers.url) as http:
        refused = http.post("/v3/mail/send", json=sendgrid_body(send_id))
        taken = http.post(
            "/v3/mail/send", json=sendgrid_body(send_id), headers={"Authorization": "Bearer k"}
        )
        found = http.get("/v3/messages", params={"query": f"unique_args['send_id']=\"{send_id}\""})
    assert refused.status_code == 401
    assert taken.status_code == 202
    assert found.json()["messages"][0]["msg_id"] == taken.headers["X-Message-Id"]
    assert providers.counts()["sendgrid"][send_id] == 1


def test_mailgun_takes_a_multipart_form_with_its_attachment(
    providers: MailProvidersServer,
) -> None:
    send_id = str(uuid.uuid4())
    with httpx.Client(base_url=providers.url) as http:
        taken = http.post(
            "/v3/mg.example.com/messages",
            data={
                "from": "a@example.com",
                "to": "Client <c@example.com>",
                "subject": "Invoice",
                "text": "hi",
                "h:Message-Id": f"<{send_id}@example.com>",
                "v:send_id": send_id,
            },
            files=[("attachment", ("x.pdf", b"%PDF-1.4 0123456789", "application/pdf"))],
            auth=("api", "key"),
        )
        events = http.get(
            "/v3/mg.example.com/events", params={"message-id": f"{send_id}@example.com"}
        )
    assert taken.status_code == 200
    assert taken.json()["message"] == "Queued. Thank you."
    assert len(events.json()["items"]) == 1
    [copy] = [m for m in providers.messages() if m["send_id"] == send_id]
    assert copy["attachment_bytes"] == len(b"%PDF-1.4 0123456789")


@pytest.mark.parametrize(("mode", "status"), [("error", 500), ("rate_limited", 429)])
def test_sparkpost_fails_on_command_and_takes_nothing(
    providers: MailProvidersServer, mode: str, status: int
) -> None:
    send_id = str(uuid.uuid4())
    providers.fault("sparkpost", mode, times=1)
    body = {
        "campaign_id": f"send-{send_id}",
        "metadata": {"send_id": send_id},
        "recipients": [{"address": {"email": "c@example.com"}}],
        "content": {"from": {"email": "a@example.com"}, "subject": "Invoice", "text": "hi"},
    }
    with httpx.Client(base_url=providers.url, headers={"Authorization": "k"}) as http:
        failed = http.post("/api/v1/transmissions", json=body)
        taken = http.post("/api/v1/transmissions", json=body)
    assert failed.status_code == status
    assert taken.status_code == 200
    assert providers.counts()["sparkpost"][send_id] == 1


def test_the_smtp_sink_counts_by_send_id() -> None:
    send_id = str(uuid.uuid4())
    message = EmailMessage()
    message["From"] = "a@example.com"
    message["To"] = "c@example.com"
    message["Subject"] = "Invoice"
    message["X-Ledgerline-Send-Id"] = send_id
    message.set_content("hi")
    with SmtpSinkServer() as sink:
        with smtplib.SMTP(sink.host, sink.port, timeout=10) as smtp:
            smtp.send_message(message)
        assert sink.counts() == {send_id: 1}
