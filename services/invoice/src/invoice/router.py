"""HTTP endpoints: parse, call one service function, shape the reply."""

import uuid
from typing import Annotated, Any, NamedTuple

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse, StreamingResponse

from common.auth import CurrentUser
from common.db import ReadSessionDep, SessionDep, read_connection
from common.edge import ModelResponse, query_model, query_parameters
from common.health import HealthStatus, answers_with, database_answers
from common.openapi import link
from common.pagination import CursorCodecDep
from invoice import service
from invoice.dependencies import AccessToken, PaymentClientDep, PdfRendererDep, SettingsDep
from invoice.models import Client, Invoice, InvoiceLine, InvoiceStatus
from invoice.payments import CardDetails, PaymentMade, mask_card_number
from invoice.repository import InvoiceFilter, InvoiceRow
from invoice.schemas import (
    SEED_STATUS,
    STATUS_FROM_SEED,
    Card,
    ClientCreate,
    ClientPage,
    ClientRead,
    InvoiceCreate,
    InvoiceDetail,
    InvoiceExportQuery,
    InvoiceLineRead,
    InvoiceListQuery,
    InvoicePage,
    InvoiceRead,
    InvoiceRequest,
    InvoiceResponse,
    MaskedCard,
    PageQuery,
    SeedListQuery,
    SendAccepted,
    SendCreate,
    SendLinks,
)

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such resource for this user"}
}
# What can follow a created client or invoice, as OpenAPI links (for clients and for the
# fuzzer's stateful phase).
CLIENT_LINKS = {
    "GetClient": link("GET", "/api/clients/{client_id}", client_id="$response.body#/id"),
    "BillClient": link("POST", "/api/invoices", body={"client_id": "$response.body#/id"}),
    "BillCustomer": link("POST", "/invoice", body={"customerId": "$response.body#/id"}),
}
# What can be done with an invoice, from any answer that shows one. Its emails are the email
# service's (the gateway routes /api/invoices/{id}/emails there) and its card payments the
# payment service's: those links resolve in the gateway's document (common.openapi.link).
INVOICE_ACTIONS = {
    "VoidInvoice": link("POST", "/api/invoices/{invoice_id}/void", invoice_id="$response.body#/id"),
    "GetInvoicePdf": link("GET", "/api/invoices/{invoice_id}/pdf", invoice_id="$response.body#/id"),
    "SendInvoice": link("POST", "/api/invoices/{invoice_id}/send", invoice_id="$response.body#/id"),
    "PayInvoice": link("POST", "/invoice/pay/{invoice_id}", invoice_id="$response.body#/id"),
    "ListInvoiceEmails": link(
        "GET", "/api/invoices/{invoice_id}/emails", invoice_id="$response.body#/id"
    ),
}
INVOICE_LINKS = {
    "GetInvoice": link("GET", "/api/invoices/{invoice_id}", invoice_id="$response.body#/id"),
    "GetSeedInvoice": link("GET", "/invoice/{invoice_id}", invoice_id="$response.body#/id"),
    **INVOICE_ACTIONS,
}
PAID_LINKS = {
    "GetSeedInvoice": link("GET", "/invoice/{invoice_id}", invoice_id="$response.body#/id"),
    "ListPayments": link("GET", "/api/payments"),
}
# A send's email, by the id the email service keeps it under (the send id).
SEND_LINKS = {
    "GetEmail": link("GET", "/api/emails/{email_id}", email_id="$response.body#/send_id"),
    "ListInvoiceEmails": link(
        "GET", "/api/invoices/{invoice_id}/emails", invoice_id="$request.path.invoice_id"
    ),
}
router = APIRouter(prefix="/api", tags=["invoices"])
seed_router = APIRouter(tags=["seed 001 contract"])


# --- /api/clients -----------------------------------------------------------------------------


@router.post(
    "/clients",
    status_code=status.HTTP_201_CREATED,
    response_model=ClientRead,
    tags=["clients"],
    responses={201: {"links": CLIENT_LINKS}},
)
async def create_client(body: ClientCreate, user: CurrentUser, session: SessionDep) -> Client:
    return await service.create_client(session, user.id, body.name, str(body.email))


@router.get("/clients", response_model=ClientPage, tags=["clients"])
async def list_clients(
    query: Annotated[PageQuery, Query()],
    user: CurrentUser,
    session: ReadSessionDep,
    codec: CursorCodecDep,
) -> ClientPage:
    page = await service.list_clients(session, codec, user.id, query.limit, query.cursor)
    return ClientPage(
        items=[ClientRead.model_validate(c, from_attributes=True) for c in page.items],
        next_cursor=page.next_cursor,
    )


@router.get(
    "/clients/{client_id}", response_model=ClientRead, responses=NOT_FOUND, tags=["clients"]
)
async def get_client(client_id: int, user: CurrentUser, session: ReadSessionDep) -> Client:
    return await service.get_client(session, user.id, client_id)


# --- /api/invoices ----------------------------------------------------------------------------


def _detail(invoice: Invoice, lines: list[InvoiceLine]) -> InvoiceDetail:
    shown = [InvoiceLineRead.model_validate(line, from_attributes=True) for line in lines] or [
        InvoiceLineRead(
            description=invoice.description,
            quantity=1,
            unit_price=invoice.amount,
            amount=invoice.amount,
        )
    ]
    read = InvoiceRead.model_validate(invoice, from_attributes=True)
    return InvoiceDetail(**dict(read), lines=shown)


@router.post(
    "/invoices",
    status_code=status.HTTP_201_CREATED,
    response_model=InvoiceDetail,
    responses={201: {"links": INVOICE_LINKS}},
)
async def create_invoice(
    body: InvoiceCreate, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> InvoiceDetail:
    """An invoice of one amount, or of `lines` that add up to it; numbered INV-000001,
    INV-000002... per user."""
    new = service.NewInvoice(
        client_id=body.client_id,
        description=body.description,
        amount=body.amount,
        currency=body.currency or settings.default_currency,
        due_date=body.due_date or service.today_utc() + settings.default_payment_terms,
        lines=tuple(
            service.NewLine(line.description, line.quantity, line.unit_price)
            for line in body.lines or ()
        ),
    )
    invoice, _ = await service.create_invoice(session, user.id, new, client_field="client_id")
    return _detail(invoice, await service.invoice_lines(session, invoice))


@router.get(
    "/invoices",
    response_model=InvoicePage,
    summary="List the user's invoices across all clients",
    # The hot read: its query string and reply skip FastAPI's per-field machinery.
    openapi_extra=query_parameters(InvoiceListQuery),
)
async def list_invoices(
    query: Annotated[InvoiceListQuery, Depends(query_model(InvoiceListQuery))],
    user: CurrentUser,
    http_request: Request,
    codec: CursorCodecDep,
) -> ModelResponse:
    """Filter by client name prefix, status and due date; sort by client name, status or due
    date (ties by due date, client name, then id); page with `next_cursor`."""
    request = service.ListRequest(
        filters=InvoiceFilter(query.client_name, query.status, query.due_date),
        order_by=query.order_by,
        order_dir=query.order_dir,
        limit=query.limit,
        cursor=query.cursor,
    )
    async with read_connection(http_request) as connection:
        page = await service.list_invoices(connection, codec, user.id, request)
    return ModelResponse(
        InvoicePage(
            items=[InvoiceRead.model_validate(i, from_attributes=True) for i in page.items],
            next_cursor=page.next_cursor,
        )
    )


CSV_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Every matching invoice as CSV, a header row first",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    },
}


# Before /invoices/{invoice_id}: routes match in the order declared, and "export.csv" is not
# an invoice id.
@router.get(
    "/invoices/export.csv",
    response_class=StreamingResponse,
    responses=CSV_RESPONSES,
    summary="Export the user's invoices as CSV, with the listing's filters and sort",
    openapi_extra=query_parameters(InvoiceExportQuery),
)
async def export_invoices(
    query: Annotated[InvoiceExportQuery, Depends(query_model(InvoiceExportQuery))],
    user: CurrentUser,
    http_request: Request,
) -> StreamingResponse:
    """The listing's filters and sort (`client_name`, `status`, `due_date`, `order_by`,
    `order_dir`), every match rather than a page: streamed as it is read, so a file of any
    size starts at once. Cells that a spreadsheet would run as a formula start with `'`."""
    rows = service.export_invoices(
        http_request.app.state.read_engine,
        user.id,
        InvoiceFilter(query.client_name, query.status, query.due_date),
        query.order_by,
        query.order_dir == "desc",
    )
    filename = f"invoices-{service.today_utc().isoformat()}.csv"
    return StreamingResponse(
        service.invoices_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f"attachment; filename={filename}",
            # The owner's data: kept by nobody in between, and asked for again each time.
            "Cache-Control": "private, no-store",
        },
    )


@router.get(
    "/invoices/{invoice_id}",
    response_model=InvoiceDetail,
    responses={200: {"links": INVOICE_ACTIONS}, **NOT_FOUND},
)
async def get_invoice(
    invoice_id: uuid.UUID, user: CurrentUser, session: ReadSessionDep
) -> InvoiceDetail:
    invoice, lines = await service.get_invoice_with_lines(session, user.id, invoice_id)
    return _detail(invoice, lines)


@router.post(
    "/invoices/{invoice_id}/void",
    response_model=InvoiceDetail,
    responses={**NOT_FOUND, 409: {"description": "The invoice is paid or already void"}},
)
async def void_invoice(
    invoice_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> InvoiceDetail:
    invoice = await service.void_invoice(session, user.id, invoice_id)
    return _detail(invoice, await service.invoice_lines(session, invoice))


PDF_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The invoice as a PDF, with its `ETag`",
        "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
    },
    304: {"description": "The copy named in `If-None-Match` is current"},
    **NOT_FOUND,
    503: {"description": "The PDF is being rendered by another request; retry shortly"},
}


@router.get(
    "/invoices/{invoice_id}/pdf",
    response_class=StreamingResponse,
    responses=PDF_RESPONSES,
    summary="Download the invoice as a PDF",
)
async def get_invoice_pdf(
    invoice_id: uuid.UUID,
    user: CurrentUser,
    session: ReadSessionDep,
    renderer: PdfRendererDep,
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Response:
    """Rendered on the first download of each version of the invoice and stored; later
    downloads stream the stored file. Send its `ETag` back in `If-None-Match` to get 304
    while the invoice has not changed."""
    download = await service.download_pdf(session, renderer, user.id, invoice_id, if_none_match)
    headers = {
        "ETag": download.stored.etag,
        # A client may keep it but must ask again: the invoice can change at any time.
        "Cache-Control": "private, no-cache",
    }
    if download.chunks is None:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    headers["Content-Disposition"] = f'inline; filename="{download.filename}"'
    headers["Content-Length"] = str(download.stored.size)
    return StreamingResponse(download.chunks, media_type="application/pdf", headers=headers)


@router.post(
    "/invoices/{invoice_id}/send",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SendAccepted,
    responses={
        202: {"links": SEND_LINKS},
        **NOT_FOUND,
        402: {"description": "The wallet's balance is too low for the fee; nothing was sent"},
        409: {"description": "The invoice is void"},
        503: {
            "description": "The payment service cannot take the fee now; nothing was sent. "
            "Retry after `Retry-After` seconds."
        },
    },
    summary="Email the invoice with its PDF",
)
async def send_invoice(
    invoice_id: uuid.UUID,
    body: SendCreate,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    renderer: PdfRendererDep,
    payments: PaymentClientDep,
    access_token: AccessToken,
) -> SendAccepted:
    """Queue an email of the invoice, its PDF attached, to `to` (the client's email by
    default) with an optional `message`. The fee (`INVOICE_SEND_FEE`) is taken from the
    wallet now and given back if the email fails for good; follow `links.email` for the
    email's status."""
    request = service.SendRequest(
        to=str(body.to) if body.to else None,
        message=body.message,
        fee_amount=settings.send_fee,
        fee_currency=settings.send_fee_currency,
    )
    send = await service.send_invoice(
        session, renderer, payments, access_token, user.id, invoice_id, request
    )
    return SendAccepted(
        send_id=send.id,
        recipient=send.recipient_email,
        fee=send.fee_amount,
        fee_currency=send.fee_currency,
        links=SendLinks(email=f"/api/emails/{send.id}", invoice=f"/api/invoices/{invoice_id}"),
    )


# --- seed 001's contract ----------------------------------------------------------------------


class ClientContact(NamedTuple):
    """A client as seed 001's answers show it, when read along with the invoice's row."""

    name: str
    email: str


def _seed_response(
    invoice: Invoice | InvoiceRow, client: Client | ClientContact, card: MaskedCard | None = None
) -> InvoiceResponse:
    return InvoiceResponse(
        id=invoice.id,
        jobDescription=invoice.description,
        customerId=invoice.client_id,
        amount=invoice.amount,
        card=card,
        customerName=client.name,
        customerEmail=client.email,
        invoiceStatus=SEED_STATUS[InvoiceStatus(invoice.status)],
    )


def _paid_with(made: PaymentMade, card: Card) -> MaskedCard:
    """The card that paid, masked: the payment service's record of it when it has one (it
    differs from this request's card when an earlier request had paid already)."""
    if made.card is not None:
        return MaskedCard(number=made.card.number, expiry=made.card.expiry, name=made.card.name)
    return MaskedCard(
        number=mask_card_number(card.number.get_secret_value()),
        expiry=card.expiry,
        name=card.name,
    )


def _card_details(card: Card) -> CardDetails:
    return CardDetails(number=card.number.get_secret_value(), expiry=card.expiry, name=card.name)


@seed_router.get(
    "/health-check",
    tags=["health"],
    response_model=HealthStatus,
    responses=answers_with(HealthStatus, "The database does not answer"),
)
async def health_check(request: Request) -> JSONResponse:
    """Seed 001's health check: 200 UP when the database answers, 503 DOWN when not."""
    up = await database_answers(request.app.state.engine)
    return JSONResponse({"status": "UP" if up else "DOWN"}, status_code=200 if up else 503)


# A card shows only in the answer of the request that paid with it: it is not kept here.
@seed_router.get(
    "/invoice/{invoice_id}",
    response_model=InvoiceResponse,
    response_model_exclude_none=True,
    responses={
        200: {
            "links": {
                "PayInvoice": INVOICE_ACTIONS["PayInvoice"],
                "SendInvoice": INVOICE_ACTIONS["SendInvoice"],
            }
        },
        **NOT_FOUND,
    },
)
async def seed_get_invoice(
    invoice_id: uuid.UUID, user: CurrentUser, session: ReadSessionDep
) -> InvoiceResponse:
    invoice, client = await service.get_invoice_and_client(session, user.id, invoice_id)
    return _seed_response(invoice, client)


PAYMENT_PROBLEMS: dict[int | str, dict[str, Any]] = {
    402: {"description": "The card was declined; the invoice is not paid"},
    409: {"description": "A payment of this invoice is in progress, or it is paid already"},
    422: {"description": "A field is invalid: the body's, or the card as the provider sees it"},
    503: {
        "description": "The payment service or the provider is unavailable; retry after "
        "`Retry-After` seconds. The invoice is not paid (an unknown outcome is settled by "
        "the payment service and shows on the invoice)."
    },
}


@seed_router.post(
    "/invoice",
    status_code=status.HTTP_201_CREATED,
    response_model=InvoiceResponse,
    response_model_exclude_none=True,
    responses={201: {"links": INVOICE_LINKS}, **PAYMENT_PROBLEMS},
)
async def seed_create_invoice(
    body: InvoiceRequest,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    payments: PaymentClientDep,
    access_token: AccessToken,
) -> InvoiceResponse:
    """Create an invoice due net 30: PENDING, or PAID with the masked `card` when a card is
    given and the payment succeeds.

    With a card, the PENDING invoice is committed before it is paid. If the payment fails the
    invoice stays PENDING and the problem (402, 409, 422 on a `card.*` field, 503) carries its
    `invoice_id`: pay it again with `POST /invoice/pay/{invoice_id}`."""
    new = service.NewInvoice(
        client_id=body.customerId,
        description=body.jobDescription,
        amount=body.amount,
        currency=settings.default_currency,
        due_date=service.today_utc() + settings.default_payment_terms,
    )
    invoice, client = await service.create_invoice(session, user.id, new, client_field="customerId")
    if body.card is None:
        return _seed_response(invoice, client)
    # The invoice exists before anything is charged: the payment is made for it (FakePay's
    # transaction id is the invoice id), and a failed payment leaves an invoice to pay again.
    await session.commit()
    paid, made = await service.pay_invoice(
        session,
        payments,
        access_token,
        user.id,
        invoice.id,
        _card_details(body.card),
        card_field="card",
    )
    return _seed_response(paid, client, _paid_with(made, body.card))


@seed_router.post(
    "/invoice/pay/{invoice_id}",
    status_code=status.HTTP_201_CREATED,
    response_model=InvoiceResponse,
    response_model_exclude_none=True,
    responses={201: {"links": PAID_LINKS}, **NOT_FOUND, **PAYMENT_PROBLEMS},
)
async def seed_pay_invoice(
    invoice_id: uuid.UUID,
    card: Card,
    user: CurrentUser,
    session: SessionDep,
    payments: PaymentClientDep,
    access_token: AccessToken,
) -> InvoiceResponse:
    """Pay a PENDING or PAST_DUE invoice by card; answers it PAID with the card masked.

    404 for an unknown invoice (or another user's), 409 when it is paid or cancelled, or
    while another payment of it is in progress; 402 declined; 422 a bad card field; 503 with
    `Retry-After` when the payment cannot be made now (the invoice stays as it was)."""
    invoice, made = await service.pay_invoice(
        session, payments, access_token, user.id, invoice_id, _card_details(card), card_field=""
    )
    client = await service.get_client(session, user.id, invoice.client_id)
    return _seed_response(invoice, client, _paid_with(made, card))


@seed_router.get(
    "/invoices", response_model=list[InvoiceResponse], response_model_exclude_none=True
)
async def seed_list_invoices(
    query: Annotated[SeedListQuery, Query()],
    request: Request,
    response: Response,
    user: CurrentUser,
    session: ReadSessionDep,
    codec: CursorCodecDep,
) -> list[InvoiceResponse]:
    """Invoices by due date, newest first, 10 at a time by default. The next page's cursor is
    in the `Link` header (rel="next") and in `X-Next-Cursor`."""
    status_filter = STATUS_FROM_SEED[query.invoiceStatus] if query.invoiceStatus else None
    page = await service.list_invoices(
        session,
        codec,
        user.id,
        service.ListRequest(
            filters=InvoiceFilter(status=status_filter),
            order_by="due_date",
            order_dir="desc",
            limit=query.limit,
            cursor=query.cursor,
        ),
        with_clients=True,
    )
    if page.next_cursor is not None:
        next_url = request.url.include_query_params(cursor=page.next_cursor)
        response.headers["Link"] = f'<{next_url}>; rel="next"'
        response.headers["X-Next-Cursor"] = page.next_cursor
    return [
        _seed_response(i, ClientContact(i.client_current_name, i.client_email)) for i in page.items
    ]
