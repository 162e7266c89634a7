"""An invoice as a PDF: a Jinja2 template rendered to HTML, then to PDF by WeasyPrint.

A PDF is rendered once per version of what it shows and stored under a key naming that
version: `invoices/<owner_id>/<invoice_id>/<version>.pdf`, the version being the invoice's own
(status, client name...), the owner's profile version (company, address) and the template's
revision, so a change to any of them renders anew and nothing stale is ever served.
"""

import asyncio
import uuid
import weakref
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from jinja2 import Environment, PackageLoader, select_autoescape

from common.logging import get_logger
from common.types import money_text
from invoice.models import InvoiceStatus
from invoice.storage import PdfObject, PdfStore

log = get_logger(__name__)

# Raise when the template's output changes: every invoice then renders anew.
TEMPLATE_REVISION = 1

STAMPS = {
    InvoiceStatus.PAID: "PAID",
    InvoiceStatus.VOID: "VOID",
    InvoiceStatus.PAST_DUE: "PAST DUE",
}


@dataclass(frozen=True)
class Party:
    """Who bills or is billed, as the header shows them."""

    name: str | None
    company: str | None = None
    address: tuple[str, ...] = ()
    email: str | None = None


@dataclass(frozen=True)
class DocumentLine:
    description: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal


@dataclass(frozen=True)
class InvoiceDocument:
    """Everything the PDF shows, and nothing else."""

    number: str
    status: InvoiceStatus
    issue_date: date
    due_date: date
    currency: str
    total: Decimal
    seller: Party
    client: Party
    lines: tuple[DocumentLine, ...]


def pdf_version(invoice_version: int, profile_version: int) -> str:
    return f"{invoice_version}.{profile_version}.{TEMPLATE_REVISION}"


def pdf_key(owner_id: uuid.UUID, invoice_id: uuid.UUID, version: str) -> str:
    return f"invoices/{owner_id}/{invoice_id}/{version}.pdf"


def pdf_filename(number: str) -> str:
    return f"{number}.pdf"


def _quantity(value: Decimal) -> str:
    """3 rather than 3.000, 1.5 rather than 1.500."""
    return f"{value.normalize():f}"


def _money(value: Decimal) -> str:
    whole, _, cents = money_text(value).partition(".")
    return f"{int(whole):,}.{cents}"


_environment = Environment(
    loader=PackageLoader("invoice", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_environment.filters["money"] = _money
_environment.filters["quantity"] = _quantity


def invoice_html(document: InvoiceDocument) -> str:
    template = _environment.get_template("invoice.html")
    return template.render(invoice=document, stamp=STAMPS.get(document.status))


def render_pdf(document: InvoiceDocument) -> bytes:
    """The PDF's bytes. Blocking (WeasyPrint): call it from a worker thread."""
    from weasyprint import HTML

    pdf: bytes = HTML(string=invoice_html(document)).write_pdf()
    return pdf


class PdfRenderer:
    """Renders PDFs into the store, in worker threads, at most `concurrency` at once, and
    never twice at once for one key in this process (callers add a database lock for the
    other processes: see service.ensure_pdf)."""

    def __init__(self, store: PdfStore, concurrency: int) -> None:
        self.store = store
        self._slots = asyncio.Semaphore(concurrency)
        self._keys: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def key_lock(self, key: str) -> asyncio.Lock:
        lock = self._keys.get(key)
        if lock is None:
            lock = self._keys[key] = asyncio.Lock()
        return lock

    async def render_into_store(self, key: str, document: InvoiceDocument) -> PdfObject:
        """The stored PDF of the key, rendered now if nobody has yet. Hold key_lock(key)."""
        stored = await self.store.head(key)
        if stored is not None:
            return stored
        async with self._slots:
            data = await asyncio.to_thread(render_pdf, document)
        stored = await self.store.put(key, data)
        log.info("invoice_pdf_rendered", key=key, size=stored.size)
        return stored
