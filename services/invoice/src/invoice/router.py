"""HTTP endpoints: parse, call one service function, shape the reply."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import JSONResponse

from common.auth import CurrentUser
from common.db import ReadSessionDep, SessionDep
from common.health import database_answers
from invoice import service
from invoice.dependencies import CursorCodecDep, SettingsDep
from invoice.exceptions import CardPaymentsUnavailable
from invoice.models import Client, Invoice, InvoiceStatus
from invoice.repository import InvoiceFilter, InvoiceRow
from invoice.schemas import (
    SEED_STATUS,
    STATUS_FROM_SEED,
    ClientCreate,
    ClientPage,
    ClientRead,
    InvoiceCreate,
    InvoiceListQuery,
    InvoicePage,
    InvoiceRead,
    InvoiceRequest,
    InvoiceResponse,
    PageQuery,
    SeedListQuery,
)

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such resource for this user"}
}
router = APIRouter(prefix="/api", tags=["invoices"])
seed_router = APIRouter(tags=["seed 001 contract"])


# --- /api/clients -----------------------------------------------------------------------------


@router.post(
    "/clients", status_code=status.HTTP_201_CREATED, response_model=ClientRead, tags=["clients"]
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


@router.post("/invoices", status_code=status.HTTP_201_CREATED, response_model=InvoiceRead)
async def create_invoice(
    body: InvoiceCreate, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> Invoice:
    new = service.NewInvoice(
        client_id=body.client_id,
        description=body.description,
        amount=body.amount,
        currency=body.currency or settings.default_currency,
        due_date=body.due_date or service.today_utc() + settings.default_payment_terms,
    )
    invoice, _ = await service.create_invoice(session, user.id, new, client_field="client_id")
    return invoice


@router.get(
    "/invoices", response_model=InvoicePage, summary="List the user's invoices across all clients"
)
async def list_invoices(
    query: Annotated[InvoiceListQuery, Query()],
    user: CurrentUser,
    session: ReadSessionDep,
    codec: CursorCodecDep,
) -> InvoicePage:
    """Filter by client name prefix, status and due date; sort by client name, status or due
    date (ties by due date, client name, then id); page with `next_cursor`."""
    request = service.ListRequest(
        filters=InvoiceFilter(query.client_name, query.status, query.due_date),
        order_by=query.order_by,
        order_dir=query.order_dir,
        limit=query.limit,
        cursor=query.cursor,
    )
    page = await service.list_invoices(session, codec, user.id, request)
    return InvoicePage(
        items=[InvoiceRead.model_validate(i, from_attributes=True) for i in page.items],
        next_cursor=page.next_cursor,
    )


@router.get("/invoices/{invoice_id}", response_model=InvoiceRead, responses=NOT_FOUND)
async def get_invoice(invoice_id: uuid.UUID, user: CurrentUser, session: ReadSessionDep) -> Invoice:
    return await service.get_invoice(session, user.id, invoice_id)


@router.post("/invoices/{invoice_id}/void", response_model=InvoiceRead, responses=NOT_FOUND)
async def void_invoice(invoice_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> Invoice:
    return await service.void_invoice(session, user.id, invoice_id)


# --- seed 001's contract ----------------------------------------------------------------------


def _seed_response(invoice: Invoice | InvoiceRow, client: Client) -> InvoiceResponse:
    return InvoiceResponse(
        id=invoice.id,
        jobDescription=invoice.description,
        customerId=invoice.client_id,
        amount=invoice.amount,
        customerName=client.name,
        customerEmail=client.email,
        invoiceStatus=SEED_STATUS[InvoiceStatus(invoice.status)],
    )


@seed_router.get("/health-check", tags=["health"])
async def health_check(request: Request) -> JSONResponse:
    """Seed 001's health check: 200 UP when the database answers, 503 DOWN when not."""
    up = await database_answers(request.app.state.engine)
    return JSONResponse({"status": "UP" if up else "DOWN"}, status_code=200 if up else 503)


@seed_router.get("/invoice/{invoice_id}", response_model=InvoiceResponse, responses=NOT_FOUND)
async def seed_get_invoice(
    invoice_id: uuid.UUID, user: CurrentUser, session: ReadSessionDep
) -> InvoiceResponse:
    invoice = await service.get_invoice(session, user.id, invoice_id)
    client = await service.get_client(session, user.id, invoice.client_id)
    return _seed_response(invoice, client)


@seed_router.post("/invoice", status_code=status.HTTP_201_CREATED, response_model=InvoiceResponse)
async def seed_create_invoice(
    body: InvoiceRequest, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> InvoiceResponse:
    """Create a PENDING invoice due net 30. Paying by `card` is not available yet: a request
    with a card is refused with 422 and creates nothing."""
    if body.card is not None:
        raise CardPaymentsUnavailable()
    new = service.NewInvoice(
        client_id=body.customerId,
        description=body.jobDescription,
        amount=body.amount,
        currency=settings.default_currency,
        due_date=service.today_utc() + settings.default_payment_terms,
    )
    invoice, client = await service.create_invoice(session, user.id, new, client_field="customerId")
    return _seed_response(invoice, client)


@seed_router.get("/invoices", response_model=list[InvoiceResponse])
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
    )
    clients = await service.clients_of(session, user.id, page.items)
    if page.next_cursor is not None:
        next_url = request.url.include_query_params(cursor=page.next_cursor)
        response.headers["Link"] = f'<{next_url}>; rel="next"'
        response.headers["X-Next-Cursor"] = page.next_cursor
    return [_seed_response(i, clients[i.client_id]) for i in page.items]
