"""Invoice PDFs: rendered from the template, stored once per version in the bucket (moto's
S3 server, a process), downloaded with an ETag and 304, rendered anew when anything they show
changes, and out of reach of other owners."""

import asyncio
import contextlib
import functools
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from common.testing.identity import TestIssuer
from common.testing.s3 import S3Server
from invoice import service
from invoice.config import InvoiceSettings
from invoice.main import create_app
from invoice.models import InvoiceStatus
from invoice.pdf import DocumentLine, InvoiceDocument, Party, invoice_html, render_pdf
from invoice.storage import CachedPdfStore, DirectoryPdfStore

from .conftest import PDF_BUCKET
from .factories import create_client, create_invoice
from .rendering import OPEN, gated_render, started_in


def writes_of(s3: S3Server, key: str) -> int:
    """How many times the object was written (the test bucket keeps every version)."""
    answer = s3.client().list_object_versions(Bucket=PDF_BUCKET, Prefix=key)
    return len([v for v in answer.get("Versions", []) if v["Key"] == key])


def stored_keys(s3: S3Server, owner: uuid.UUID, invoice_id: str) -> list[str]:
    prefix = f"invoices/{owner}/{invoice_id}/"
    answer = s3.client().list_objects_v2(Bucket=PDF_BUCKET, Prefix=prefix)
    return sorted(item["Key"] for item in answer.get("Contents", []))


async def test_the_pdf_is_rendered_once_and_downloaded_with_an_etag(
    api: httpx.AsyncClient, auth: dict[str, str], owner: uuid.UUID, s3: S3Server
) -> None:
    client = await create_client(api, auth)
    invoice = await create_invoice(api, auth, client["id"])
    url = invoice["links"]["pdf"]

    first = await api.get(url, headers=auth)
    again = await api.get(url, headers=auth)
    cached = await api.get(url, headers={**auth, "If-None-Match": first.headers["etag"]})

    assert first.status_code == 200
    assert first.headers["content-type"] == "application/pdf"
    assert first.content.startswith(b"%PDF-")
    assert first.headers["content-disposition"] == 'inline; filename="INV-000001.pdf"'
    assert again.content == first.content
    assert again.headers["etag"] == first.headers["etag"]
    assert cached.status_code == 304
    assert cached.content == b""
    assert cached.headers["etag"] == first.headers["etag"]
    [key] = stored_keys(s3, owner, invoice["id"])
    # Invoice version 1; no profile of the owner has arrived (0); template revision 1.
    assert key == f"invoices/{owner}/{invoice['id']}/1.0.1.pdf"
    assert writes_of(s3, key) == 1
    stored = s3.client().get_object(Bucket=PDF_BUCKET, Key=key)
    assert stored["Body"].read() == first.content
    assert stored["ETag"] == first.headers["etag"]


async def test_downloads_at_once_render_one_version_once(
    api: httpx.AsyncClient, auth: dict[str, str], owner: uuid.UUID, s3: S3Server
) -> None:
    client = await create_client(api, auth)
    invoice = await create_invoice(api, auth, client["id"])

    answers = await asyncio.gather(
        *(api.get(invoice["links"]["pdf"], headers=auth) for _ in range(6))
    )

    assert {answer.status_code for answer in answers} == {200}
    assert len({answer.content for answer in answers}) == 1
    [key] = stored_keys(s3, owner, invoice["id"])
    assert writes_of(s3, key) == 1


async def test_two_processes_render_one_version_once(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
    s3: S3Server,
    settings: InvoiceSettings,
) -> None:
    """A second app with its own renderer stands for another API process: only the
    database's named lock keeps the two from rendering the same version each."""
    client = await create_client(api, auth)
    invoice = await create_invoice(api, auth, client["id"])
    other_app = create_app(settings)
    async with other_app.router.lifespan_context(other_app):
        transport = httpx.ASGITransport(app=other_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://other.test") as other:
            answers = await asyncio.gather(
                *(
                    http.get(invoice["links"]["pdf"], headers=auth)
                    for http in (api, other, api, other)
                )
            )

    assert {answer.status_code for answer in answers} == {200}
    [key] = stored_keys(s3, owner, invoice["id"])
    assert writes_of(s3, key) == 1


async def test_a_changed_invoice_renders_anew(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
    s3: S3Server,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        await service.save_owner_profile(session, profile(owner, company_name="First Ltd"))
    client = await create_client(api, auth)
    invoice = await create_invoice(api, auth, client["id"])
    url = invoice["links"]["pdf"]
    before = await api.get(url, headers=auth)

    voided = await api.post(f"/api/invoices/{invoice['id']}/void", headers=auth)
    after_void = await api.get(url, headers={**auth, "If-None-Match": before.headers["etag"]})
    # The owner's new company name is on the header: another version again.
    async with sessionmaker() as session, session.begin():
        await service.save_owner_profile(session, profile(owner, company_name="Renamed Ltd"))
    after_profile = await api.get(
        url, headers={**auth, "If-None-Match": after_void.headers["etag"]}
    )

    assert voided.json()["version"] == invoice["version"] + 1
    assert after_void.status_code == 200
    assert after_void.headers["etag"] != before.headers["etag"]
    assert after_profile.status_code == 200
    assert after_profile.headers["etag"] != after_void.headers["etag"]
    assert len(stored_keys(s3, owner, invoice["id"])) == 3


async def test_an_unchanged_profile_keeps_the_pdf(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    owner: uuid.UUID,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        await service.save_owner_profile(session, profile(owner, company_name="Same Ltd"))
    client = await create_client(api, auth)
    invoice = await create_invoice(api, auth, client["id"])
    first = await api.get(invoice["links"]["pdf"], headers=auth)

    async with sessionmaker() as session, session.begin():
        await service.save_owner_profile(session, profile(owner, company_name="Same Ltd"))
    again = await api.get(
        invoice["links"]["pdf"], headers={**auth, "If-None-Match": first.headers["etag"]}
    )

    assert again.status_code == 304


async def test_another_owners_pdf_is_not_found_like_a_missing_one(
    api: httpx.AsyncClient, auth: dict[str, str], test_issuer: TestIssuer
) -> None:
    client = await create_client(api, auth)
    invoice = await create_invoice(api, auth, client["id"])
    mallory = test_issuer.headers(uuid.uuid4())

    theirs = await api.get(invoice["links"]["pdf"], headers=mallory)
    missing = await api.get(f"/api/invoices/{uuid.uuid4()}/pdf", headers=mallory)
    unsigned = await api.get(invoice["links"]["pdf"])

    assert theirs.status_code == 404
    assert (theirs.status_code, theirs.json()) == (missing.status_code, missing.json())
    assert unsigned.status_code == 401


# --- the rendering processes ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def gated_app(settings: InvoiceSettings, gate: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An app of its own whose renders wait for the test's word (tests/rendering.py)."""
    application = create_app(settings, render=functools.partial(gated_render, gate))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://gated.test") as api:
            yield api


async def renders_started(gate: Path, count: int = 1) -> set[int]:
    """The process ids of the renders begun, once there are `count` of them."""
    for _ in range(6000):
        if len(started := started_in(gate)) >= count:
            return started
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {count} renders ever began")


async def test_requests_are_answered_while_a_pdf_renders_in_another_process(
    settings: InvoiceSettings, auth: dict[str, str], tmp_path: Path
) -> None:
    """WeasyPrint holds the GIL: rendered in a thread of the API it starved the event loop,
    and every request of the process waited behind it. The render here does not finish
    until the test has had an answer to another request."""
    async with gated_app(settings, tmp_path) as api:
        client = await create_client(api, auth)
        invoice = await create_invoice(api, auth, client["id"])
        download = asyncio.create_task(api.get(invoice["links"]["pdf"], headers=auth))
        [rendering] = await renders_started(tmp_path)

        listing = await api.get("/api/invoices", headers=auth)
        render_pending = not download.done()
        (tmp_path / OPEN).touch()
        pdf = await download

    assert listing.status_code == 200
    assert render_pending
    assert rendering != os.getpid()
    assert pdf.status_code == 200
    assert pdf.content.startswith(b"%PDF-")


async def test_a_rendering_process_that_dies_is_replaced_and_the_render_done_again(
    settings: InvoiceSettings, auth: dict[str, str], tmp_path: Path
) -> None:
    async with gated_app(settings, tmp_path) as api:
        client = await create_client(api, auth)
        invoice = await create_invoice(api, auth, client["id"])
        download = asyncio.create_task(api.get(invoice["links"]["pdf"], headers=auth))
        [first] = await renders_started(tmp_path)

        os.kill(first, signal.SIGKILL)
        again = await renders_started(tmp_path, 2)
        (tmp_path / OPEN).touch()
        pdf = await download
        # The new pool renders the next invoice as usual.
        other = await create_invoice(api, auth, client["id"])
        next_pdf = await api.get(other["links"]["pdf"], headers=auth)

    assert again - {first}
    assert pdf.status_code == 200
    assert pdf.content.startswith(b"%PDF-")
    assert next_pdf.status_code == 200


# An API process that starts its rendering processes, says their ids, and waits to be killed.
RENDERING_API = """
import sys, time
from pathlib import Path
from invoice.pdf import PdfRenderer
from invoice.storage import DirectoryPdfStore

renderer = PdfRenderer(DirectoryPdfStore(Path(sys.argv[1])), 2)
renderer.start()
print(*renderer._pool._processes, flush=True)
time.sleep(600)
"""


def running(pid: int) -> bool:
    """The process exists and has not exited (a zombie has)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def test_rendering_processes_end_when_their_api_is_killed(tmp_path: Path) -> None:
    """kill -9 of the API leaves its pool's processes behind, waiting for work that never
    comes: they notice the API is gone and end."""
    api = await asyncio.create_subprocess_exec(
        sys.executable, "-c", RENDERING_API, str(tmp_path), stdout=asyncio.subprocess.PIPE
    )
    assert api.stdout is not None
    rendering = [int(pid) for pid in (await api.stdout.readline()).split()]
    api.kill()

    async def ended() -> None:
        for _ in range(1200):
            if not any(running(pid) for pid in rendering):
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the rendering processes outlived their API")

    # The API's wait ends once its stdout is closed, which the rendering processes hold too.
    await asyncio.wait_for(asyncio.gather(ended(), api.wait()), 150)
    assert len(rendering) == 2


def profile(owner: uuid.UUID, **fields: Any) -> service.OwnerProfile:
    values: dict[str, Any] = dict.fromkeys(service.PROFILE_FIELDS)
    values.update(email="owner@example.com", name="Zoë Müller", **fields)
    return service.OwnerProfile(owner_id=owner, **values)


# --- the template -----------------------------------------------------------------------------


def document(status: InvoiceStatus, lines: int, description: str = "Consulting") -> InvoiceDocument:
    shown = tuple(
        DocumentLine(f"{description} {n}", Decimal("1.5"), Decimal("100.00"), Decimal("150.00"))
        for n in range(lines)
    )
    return InvoiceDocument(
        number="INV-000042",
        status=status,
        issue_date=date(2026, 11, 30),
        due_date=date(2026, 12, 30),
        currency="EUR",
        total=Decimal("150.00") * lines,
        seller=Party("Zoë Müller", "Müller & Söhne GmbH", ("Hauptstraße 5", "10115 Berlin"), None),
        client=Party("東京商事株式会社", email="ap@client.example"),
        lines=shown,
    )


def test_the_template_shows_what_an_invoice_needs() -> None:
    html = invoice_html(document(InvoiceStatus.PAST_DUE, 2))

    for text in (
        "INV-000042",
        "Müller &amp; Söhne GmbH",
        "Hauptstraße 5",
        "東京商事株式会社",
        "2026-11-30",
        "2026-12-30",
        "300.00 EUR",
        "Consulting 1",
        "PAST DUE",
    ):
        assert text in html, text
    assert ">PAID<" not in invoice_html(document(InvoiceStatus.PENDING, 1))
    assert ">PAID<" in invoice_html(document(InvoiceStatus.PAID, 1))
    assert ">VOID<" in invoice_html(document(InvoiceStatus.VOID, 1))


def page_texts(page: Any) -> set[str]:
    """The texts laid out on one rendered page, page headers included."""
    found: set[str] = set()

    def walk(box: Any) -> None:
        if hasattr(box, "text"):
            found.add(box.text)
        for child in getattr(box, "children", ()):
            walk(child)

    walk(page._page_box)
    return found


def test_text_is_escaped() -> None:
    html = invoice_html(document(InvoiceStatus.PENDING, 1, description="<script>x</script>"))

    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_many_lines_break_across_pages_and_one_line_is_one_page() -> None:
    from weasyprint import HTML

    one = HTML(string=invoice_html(document(InvoiceStatus.PENDING, 1))).render()
    many = HTML(string=invoice_html(document(InvoiceStatus.PENDING, 90, "Long " * 30))).render()

    assert len(one.pages) == 1
    assert len(many.pages) > 2
    # Every page repeats the table's header and names the invoice and the seller.
    for page in many.pages:
        texts = page_texts(page)
        assert "Description" in texts
        assert "Invoice INV-000042" in texts
        assert "Müller & Söhne GmbH" in texts
    assert render_pdf(document(InvoiceStatus.PENDING, 1)).startswith(b"%PDF-")


async def test_the_memory_cache_serves_stored_pdfs_and_drops_the_least_recent(
    tmp_path: Path,
) -> None:
    directory = DirectoryPdfStore(tmp_path)
    store = CachedPdfStore(directory, max_bytes=10, max_object_bytes=6)
    await store.put("a.pdf", b"aaaaa")
    await store.put("b.pdf", b"bbbbb")
    (tmp_path / "b.pdf").unlink()  # kept in memory: still served, with its ETag
    found = await store.read("b.pdf")
    assert found is not None
    assert b"".join([chunk async for chunk in found[1]]) == b"bbbbb"
    await store.put("c.pdf", b"ccccc")  # over 10 bytes: "a", least recently used, goes
    (tmp_path / "a.pdf").unlink()
    assert await store.read("a.pdf") is None
    await store.put("big.pdf", b"x" * 7)  # larger than an object may be: not kept
    (tmp_path / "big.pdf").unlink()
    assert await store.head("big.pdf") is None
