"""The words of each message, as plain text and HTML built from the same facts.

Everything that comes from a user (names, the owner's message, the description) is escaped
in the HTML, so an invoice description cannot inject markup into the client's mailbox.
"""

from dataclasses import dataclass
from datetime import datetime
from html import escape


@dataclass(frozen=True)
class Body:
    text: str
    html: str


def _html_page(paragraphs: list[str], rows: list[tuple[str, str]]) -> str:
    """A plain, mail-client-safe page: inline styles, one table of facts."""
    parts = [f"<p>{escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs]
    table = "".join(
        f'<tr><th align="left" style="padding:4px 12px 4px 0">{escape(label)}</th>'
        f'<td style="padding:4px 0">{escape(value)}</td></tr>'
        for label, value in rows
    )
    return (
        '<!doctype html><html><body style="font-family:Arial,sans-serif;color:#222">'
        + "".join(parts)
        + f'<table style="border-collapse:collapse">{table}</table>'
        + "</body></html>"
    )


def _text_page(paragraphs: list[str], rows: list[tuple[str, str]]) -> str:
    width = max((len(label) for label, _ in rows), default=0)
    table = "\n".join(f"{label.ljust(width)}  {value}" for label, value in rows)
    return "\n\n".join(paragraphs) + "\n\n" + table + "\n"


def invoice_body(
    *,
    client_name: str,
    sender_name: str,
    number: str,
    description: str,
    amount: str,
    currency: str,
    due_date: str,
    message: str | None,
) -> Body:
    """An invoice sent by its owner to their client, the PDF attached."""
    paragraphs = [f"Dear {client_name},"]
    if message:
        paragraphs.append(message)
    paragraphs.append(
        f"{sender_name} has sent you invoice {number}. The invoice is attached as a PDF."
    )
    rows = [
        ("Invoice", number),
        ("Description", description),
        ("Amount due", f"{amount} {currency}"),
        ("Due date", due_date),
    ]
    return Body(_text_page(paragraphs, rows), _html_page(paragraphs, rows))


def payment_failed_body(
    *,
    client_name: str,
    platform_name: str,
    amount: str,
    currency: str,
    failure_code: str,
    final: bool,
    next_attempt_at: datetime | None,
) -> Body:
    """A notice to a client that an automatic charge of their saved card was declined."""
    paragraphs = [
        f"Dear {client_name},",
        f"We could not charge your saved payment method {amount} {currency} for your invoice.",
    ]
    if final or next_attempt_at is None:
        paragraphs.append(
            "We will not try again automatically. Please pay the invoice another way or "
            "contact the sender."
        )
    else:
        paragraphs.append(
            f"We will try again on {next_attempt_at:%Y-%m-%d}. Please make sure your payment "
            "method can be charged."
        )
    paragraphs.append(f"-- {platform_name}")
    rows = [("Amount", f"{amount} {currency}"), ("Reason", failure_code.replace("_", " "))]
    return Body(_text_page(paragraphs, rows), _html_page(paragraphs, rows))


def receipt_body(
    *,
    client_name: str,
    platform_name: str,
    number: str | None,
    amount: str,
    currency: str,
    card_last4: str,
    paid_at: datetime,
) -> Body:
    """A receipt to a client whose card paid an invoice: the card by its last four only."""
    what = f"invoice {number}" if number else "your invoice"
    paragraphs = [
        f"Dear {client_name},",
        f"Thank you: we received your payment of {amount} {currency} for {what}.",
        "Please keep this email as your receipt.",
        f"-- {platform_name}",
    ]
    rows = [
        ("Invoice", number or "-"),
        ("Amount paid", f"{amount} {currency}"),
        ("Card", masked_card(card_last4)),
        ("Paid on", f"{paid_at:%Y-%m-%d}"),
    ]
    return Body(_text_page(paragraphs, rows), _html_page(paragraphs, rows))


def masked_card(last4: str) -> str:
    """The card as a receipt shows it: four stars and at most the last four digits, whatever
    the event carried."""
    digits = "".join(c for c in last4 if c.isdigit())[-4:]
    return f"**** {digits}"
