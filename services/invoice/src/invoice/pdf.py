"""An invoice as a PDF: a Jinja2 template rendered to HTML, then to PDF by WeasyPrint.

A PDF is rendered once per version of what it shows and stored under a key naming that
version: `invoices/<owner_id>/<invoice_id>/<version>.pdf`, the version being the invoice's own
(status, client name...), the owner's profile version (company, address) and the template's
revision, so a change to any of them renders anew and nothing stale is ever served.
"""

import asyncio
import multiprocessing
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from jinja2 import Environment, PackageLoader, select_autoescape

from common.logging import get_logger
from common.types import money_text
from invoice.exceptions import PdfRendererUnavailable
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
    """The PDF's bytes. Blocking and CPU-bound (WeasyPrint): the API calls it in a process of
    the renderer's pool (PdfRenderer), never in its own."""
    from weasyprint import HTML

    pdf: bytes = HTML(string=invoice_html(document)).write_pdf()
    return pdf


# How often a rendering process checks that the API that started it is still there.
PARENT_CHECK_SECONDS = 1.0


def _prepare_rendering_process(api: int) -> None:
    """A rendering process imports WeasyPrint once, as it starts, rather than on its first
    invoice, and ends when the API that started it (process id `api`, taken by the API
    itself: it may be gone before this runs) is gone."""
    threading.Thread(target=_end_with, args=(api,), daemon=True).start()
    import weasyprint  # noqa: F401


def _end_with(parent: int) -> None:
    """Exit once the parent has died. A pool's process waits for work on a queue that it
    holds both ends of, so it would never notice an API killed with SIGKILL and would stay,
    orphaned, for good."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(0)


class PdfRenderer:
    """Renders PDFs into the store in a pool of processes of its own, at most `concurrency`
    at once, and never twice at once for one key in this process (callers add a database
    lock for the other processes: see service.ensure_pdf).

    Why processes: WeasyPrint is Python doing layout, holding the GIL nearly all the time. In
    a thread of the API it starved the event loop, so every other request of the process
    waited behind each render (docs/benchmarks.md, "Load"). In a process of its own a render
    takes a core's share from the operating system and nothing from the event loop.

    `start()` and `close()` belong to the app's lifespan. A rendering process that dies
    (killed, out of memory) breaks the pool: the renderer starts a new one and renders again,
    once. `render` is what a rendering process calls; tests pass their own.
    """

    def __init__(
        self,
        store: PdfStore,
        concurrency: int,
        render: Callable[[InvoiceDocument], bytes] = render_pdf,
    ) -> None:
        self.store = store
        self.concurrency = concurrency
        self._render = render
        self._slots = asyncio.Semaphore(concurrency)
        self._keys: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Start the rendering processes now, so the first invoice does not wait for them;
        they start beside the API, which does not wait for them either."""
        pool = self._running_pool()
        for _ in range(self.concurrency):
            pool.submit(int)  # a no-op: each spawns a process while none is idle

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _running_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: a fork of a process with an event loop and threads running
            # copies their locks in whatever state they are.
            self._pool = ProcessPoolExecutor(
                max_workers=self.concurrency,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_prepare_rendering_process,
                initargs=(os.getpid(),),
            )
        return self._pool

    def key_lock(self, key: str) -> asyncio.Lock:
        lock = self._keys.get(key)
        if lock is None:
            lock = self._keys[key] = asyncio.Lock()
        return lock

    async def render(self, document: InvoiceDocument) -> bytes:
        """The document's PDF, rendered in a process of the pool."""
        loop = asyncio.get_running_loop()
        async with self._slots:
            for attempt in (1, 2):
                pool = self._running_pool()
                try:
                    return await loop.run_in_executor(pool, self._render, document)
                except BrokenProcessPool:
                    log.warning("pdf_renderer_restarted", attempt=attempt)
                    if self._pool is pool:  # not replaced already by another request
                        pool.shutdown(wait=False, cancel_futures=True)
                        self._pool = None
        raise PdfRendererUnavailable()

    async def render_into_store(self, key: str, document: InvoiceDocument) -> PdfObject:
        """The stored PDF of the key, rendered now if nobody has yet. Hold key_lock(key)."""
        stored = await self.store.head(key)
        if stored is not None:
            return stored
        data = await self.render(document)
        stored = await self.store.put(key, data)
        log.info("invoice_pdf_rendered", key=key, size=stored.size)
        return stored
