"""HTTP endpoints: parse, call one service function, shape the reply.

`/api/...` is the owner's, behind the gateway. `/internal/...` is for other services only
(the gateway does not route it): the invoice service pays invoices through it, the email
service will take and refund fees through it. Both act for the owner of the bearer token.
"""

import uuid
from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Header, Query, Response, status

from common.auth import CurrentUser
from common.db import ReadSessionDep, SessionDep
from common.errors import ProblemError
from common.idempotency import KEY_HEADER
from common.logging import get_logger
from common.openapi import link
from common.pagination import CursorCodecDep
from payment import billing, payment_methods, service, wallet
from payment.dependencies import ChargingDep
from payment.exceptions import PaymentNotCompleted
from payment.schemas import (
    BalanceRead,
    BillingRunDetail,
    BillingRunItemRead,
    BillingRunPage,
    BillingRunQuery,
    BillingRunRead,
    DebitCreate,
    InvoicePaymentCreate,
    PageQuery,
    PaymentMethodCreate,
    PaymentMethodPage,
    PaymentMethodQuery,
    PaymentMethodRead,
    PaymentPage,
    PaymentRead,
    RefundCreate,
    TopupCreate,
    TopupRead,
    WalletRead,
    WalletTransactionPage,
    WalletTransactionRead,
)

log = get_logger(__name__)
T = TypeVar("T")

PROBLEM = "application/problem+json"


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM: {}}}


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _problem("No such resource for this user")}
CARD_ERRORS: dict[int | str, dict[str, Any]] = {
    402: _problem("The card was declined (insufficient funds); nothing was charged"),
    422: _problem("Malformed or expired card, or another bad field; `errors[].field` names it"),
    503: _problem(
        "The provider is down or timed out (see Retry-After); the attempt is settled with the "
        "provider before the next one, so nothing is charged twice"
    ),
}

payments_router = APIRouter(prefix="/api/payments", tags=["payments"])
wallet_router = APIRouter(prefix="/api/wallet", tags=["wallet"])
internal_router = APIRouter(prefix="/internal", tags=["internal"])
methods_router = APIRouter(prefix="/api/payment-methods", tags=["payment methods"])
runs_router = APIRouter(prefix="/api/billing-runs", tags=["billing runs"])


async def _card_request(call: Awaitable[T], retry_after_seconds: int) -> T:
    """Run a request that carries a card; an unexpected failure is logged by type only.

    The frames under a card request hold the raw body, card number included, and a logged
    traceback may print their variables: so nothing is let through to the generic handler.
    """
    try:
        return await call
    except ProblemError:
        raise
    except Exception as exc:
        log.error("card_request_failed", error_type=type(exc).__name__)
        raise PaymentNotCompleted(retry_after_seconds) from None


# --- /internal: called by other services ------------------------------------------------------


# What can follow an answer, as OpenAPI links (for clients and the fuzzer's stateful phase).
PAYMENT_LINK = link("GET", "/api/payments/{payment_id}", payment_id="$response.body#/id")
TOPUP_PAYMENT_LINK = link(
    "GET", "/api/payments/{payment_id}", payment_id="$response.body#/payment/id"
)
REFUND_LINK = link(
    "POST", "/internal/wallet/refunds", body={"reference": "$response.body#/reference"}
)


@internal_router.post(
    "/invoice-payments",
    status_code=status.HTTP_201_CREATED,
    response_model=PaymentRead,
    summary="Pay an invoice by card (called by the invoice service)",
    responses={
        201: {"links": {"GetPayment": PAYMENT_LINK}},
        200: {"description": "The invoice was already paid: the payment that paid it"},
        409: _problem("Another payment of this invoice is in progress; try again later"),
        **CARD_ERRORS,
    },
)
async def pay_invoice(
    body: InvoicePaymentCreate, user: CurrentUser, charging: ChargingDep, response: Response
) -> PaymentRead:
    """Charge the card for the invoice: 201 with the payment when charged now, 200 with the
    payment that paid it when the invoice was paid already (nothing is charged)."""
    charge = service.InvoiceCharge(
        invoice_id=body.invoice_id,
        amount=body.amount,
        currency=body.currency,
        description=body.description,
        card=body.card.details(),
        client_email=body.client_email,
        client_name=body.client_name,
        invoice_number=body.invoice_number,
    )
    result = await _card_request(
        service.pay_invoice(charging, user.id, charge), charging.settings.retry_after_seconds
    )
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return PaymentRead.of(result.payment)


@internal_router.post(
    "/wallet/debits",
    status_code=status.HTTP_201_CREATED,
    response_model=WalletTransactionRead,
    summary="Take a platform fee from the wallet (called by the email service)",
    responses={
        201: {"links": {"RefundDebit": REFUND_LINK}},
        200: {"description": "This reference was debited before: that debit, not applied again"},
        402: _problem("The balance is lower than the amount; nothing was taken"),
        409: _problem("The reference was used for a different amount or currency"),
    },
)
async def debit_wallet(
    body: DebitCreate, user: CurrentUser, session: SessionDep, response: Response
) -> WalletTransactionRead:
    change = await wallet.debit_fee(
        session, user.id, body.currency, body.amount, body.reference, body.description
    )
    if not change.applied:
        response.status_code = status.HTTP_200_OK
    return WalletTransactionRead.of(change.entry)


@internal_router.post(
    "/wallet/refunds",
    status_code=status.HTTP_201_CREATED,
    response_model=WalletTransactionRead,
    summary="Give a platform fee back (called by the email service)",
    responses={
        200: {"description": "This debit was refunded before: that refund, not applied again"},
        **NOT_FOUND,
    },
)
async def refund_wallet(
    body: RefundCreate, user: CurrentUser, session: SessionDep, response: Response
) -> WalletTransactionRead:
    change = await wallet.refund_fee(session, user.id, body.reference)
    if not change.applied:
        response.status_code = status.HTTP_200_OK
    return WalletTransactionRead.of(change.entry)


# --- /api/payments ----------------------------------------------------------------------------


@payments_router.get("", response_model=PaymentPage, summary="The user's card payments")
async def list_payments(
    query: Annotated[PageQuery, Query()],
    user: CurrentUser,
    session: ReadSessionDep,
    codec: CursorCodecDep,
) -> PaymentPage:
    """Newest first; page with `next_cursor`."""
    page = await service.list_payments(session, codec, user.id, query.limit, query.cursor)
    return PaymentPage(items=[PaymentRead.of(p) for p in page.items], next_cursor=page.next_cursor)


@payments_router.get("/{payment_id}", response_model=PaymentRead, responses=NOT_FOUND)
async def get_payment(
    payment_id: uuid.UUID, user: CurrentUser, session: ReadSessionDep
) -> PaymentRead:
    return PaymentRead.of(await service.get_payment(session, user.id, payment_id))


# --- /api/wallet ------------------------------------------------------------------------------


@wallet_router.get("", response_model=WalletRead, summary="The user's balance per currency")
async def get_wallet(user: CurrentUser, session: ReadSessionDep) -> WalletRead:
    accounts = await wallet.balances(session, user.id)
    return WalletRead(
        balances=[BalanceRead(currency=a.currency, balance=a.balance) for a in accounts]
    )


@wallet_router.post(
    "/topups",
    status_code=status.HTTP_201_CREATED,
    response_model=TopupRead,
    summary="Add funds to the wallet by card",
    responses={
        201: {
            "links": {
                "GetPayment": TOPUP_PAYMENT_LINK,
                "GetWallet": link("GET", "/api/wallet"),
                "ListWalletTransactions": link("GET", "/api/wallet/transactions"),
            }
        },
        **CARD_ERRORS,
        503: _problem(
            "The provider is down or timed out, or a top-up under this Idempotency-Key is not "
            "settled yet (see Retry-After). Sent again with the same key, the top-up is settled "
            "with the provider first and charged at most once"
        ),
    },
)
async def top_up(
    body: TopupCreate,
    user: CurrentUser,
    charging: ChargingDep,
    # The idempotency middleware documents the header; here it also keys the top-up itself.
    idempotency_key: Annotated[
        str | None, Header(alias=KEY_HEADER, include_in_schema=False)
    ] = None,
) -> TopupRead:
    """Charge the card and credit the wallet: 201 with the payment, its ledger entry and the
    balance it left. With an Idempotency-Key, the top-up already made under it, if any."""
    # The header's bytes, as the middleware keys them (Starlette decodes headers as latin-1).
    key = idempotency_key.encode("latin-1") if idempotency_key else None
    topup = await _card_request(
        service.top_up(charging, user.id, body.amount, body.currency, body.card.details(), key),
        charging.settings.retry_after_seconds,
    )
    return TopupRead(
        payment=PaymentRead.of(topup.payment),
        transaction=WalletTransactionRead.of(topup.entry),
        balance=BalanceRead(currency=topup.entry.currency, balance=topup.entry.balance_after),
    )


@wallet_router.get(
    "/transactions", response_model=WalletTransactionPage, summary="The wallet's history"
)
async def list_transactions(
    query: Annotated[PageQuery, Query()],
    user: CurrentUser,
    session: ReadSessionDep,
    codec: CursorCodecDep,
) -> WalletTransactionPage:
    """Every currency, newest first, each with the balance it left; page with `next_cursor`."""
    page = await service.list_wallet_entries(session, codec, user.id, query.limit, query.cursor)
    return WalletTransactionPage(
        items=[WalletTransactionRead.of(e) for e in page.items], next_cursor=page.next_cursor
    )


# --- /api/payment-methods ---------------------------------------------------------------------


METHOD_LINK = link("DELETE", "/api/payment-methods/{method_id}", method_id="$response.body#/id")


@methods_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=PaymentMethodRead,
    summary="Save a client's card for the monthly billing run",
    responses={
        201: {"links": {"RemovePaymentMethod": METHOD_LINK}},
        422: CARD_ERRORS[422],
        503: _problem("The provider is down; nothing was saved, try again (see Retry-After)"),
    },
)
async def add_payment_method(
    body: PaymentMethodCreate, user: CurrentUser, session: SessionDep, charging: ChargingDep
) -> PaymentMethodRead:
    """The card goes to the provider once; only its token and the masked card are kept. The
    newest method of a client is the one the billing run charges."""
    new = payment_methods.NewPaymentMethod(body.client_id, body.card.details())
    method = await _card_request(
        payment_methods.add_payment_method(
            session, charging.provider, user.id, new, charging.settings.retry_after_seconds
        ),
        charging.settings.retry_after_seconds,
    )
    return PaymentMethodRead.of(method)


@methods_router.get("", response_model=PaymentMethodPage, summary="The clients' saved cards")
async def list_payment_methods(
    query: Annotated[PaymentMethodQuery, Query()],
    user: CurrentUser,
    session: ReadSessionDep,
    codec: CursorCodecDep,
) -> PaymentMethodPage:
    """Newest first, of one client with `client_id`; page with `next_cursor`."""
    page = await payment_methods.list_payment_methods(
        session, codec, user.id, query.client_id, query.limit, query.cursor
    )
    return PaymentMethodPage(
        items=[PaymentMethodRead.of(m) for m in page.items], next_cursor=page.next_cursor
    )


@methods_router.delete(
    "/{method_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=NOT_FOUND,
    summary="Remove a saved card; the client is no longer charged automatically with it",
)
async def remove_payment_method(
    method_id: uuid.UUID, user: CurrentUser, session: SessionDep, charging: ChargingDep
) -> Response:
    await payment_methods.remove_payment_method(session, charging.provider, user.id, method_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- /api/billing-runs ------------------------------------------------------------------------


@runs_router.get("", response_model=BillingRunPage, summary="Monthly billing runs")
async def list_billing_runs(
    query: Annotated[PageQuery, Query()],
    user: CurrentUser,
    session: ReadSessionDep,
    codec: CursorCodecDep,
) -> BillingRunPage:
    """Newest first, each with the counts of the user's own invoices per outcome."""
    page = await billing.list_runs(session, codec, user.id, query.limit, query.cursor)
    return BillingRunPage(
        items=[BillingRunRead.of(r.run, r.counts) for r in page.items],
        next_cursor=page.next_cursor,
    )


@runs_router.get(
    "/{run_id}",
    response_model=BillingRunDetail,
    responses=NOT_FOUND,
    summary="A billing run's outcomes for the user's invoices",
)
async def get_billing_run(
    run_id: uuid.UUID,
    query: Annotated[BillingRunQuery, Query()],
    user: CurrentUser,
    session: ReadSessionDep,
    codec: CursorCodecDep,
) -> BillingRunDetail:
    """Counts per outcome and one page of the user's invoices with outcome and reason."""
    detail = await billing.run_detail(session, codec, user.id, run_id, query.limit, query.cursor)
    report = BillingRunRead.of(detail.report.run, detail.report.counts)
    return BillingRunDetail(
        **report.model_dump(),
        items=[BillingRunItemRead.of(item) for item in detail.items],
        next_cursor=detail.next_cursor,
    )
