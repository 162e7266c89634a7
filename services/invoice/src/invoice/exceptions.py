"""Domain errors of the invoice service, each named after the fact it reports."""

from typing import Any

from common.errors import Conflict, InvalidInput, NotFound, ProblemError


class InvoiceNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("No invoice with this id")


class ClientNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("No client with this id")


class UnknownClient(InvalidInput):
    """The body names a client the owner does not have."""

    def __init__(self, field: str) -> None:
        super().__init__("No client with this id", field=field)


class InvoiceNotOpen(Conflict):
    def __init__(self, status: str) -> None:
        super().__init__(f"The invoice is {status}; only pending or past due invoices change")


class InvoiceNotPayable(Conflict):
    def __init__(self, status: str) -> None:
        super().__init__(f"The invoice is {status}; only pending or past due invoices are paid")


class PaymentRefused(ProblemError):
    """The payment service refused the payment (declined, in progress, a bad card): its
    status, title, detail and field are passed on as they are."""

    def __init__(
        self, status: int, title: str, detail: str, *, field: str | None, **extensions: Any
    ) -> None:
        super().__init__(detail, field=field, **extensions)
        self.status = status
        self.title = title


class PaymentsUnavailable(ProblemError):
    """No answer on the payment: try again after `retry_after` seconds."""

    status = 503
    title = "Payment service unavailable"

    def __init__(self, detail: str, *, retry_after: int, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.headers = {"Retry-After": str(retry_after)}


class InvoiceNotSendable(Conflict):
    def __init__(self, status: str) -> None:
        super().__init__(f"The invoice is {status}; a void invoice is not sent")


class InsufficientBalance(ProblemError):
    """The wallet cannot pay the fee for sending: nothing was sent or taken."""

    status = 402
    title = "Insufficient balance"


class InvalidLines(InvalidInput):
    """The lines and the amount of a new invoice disagree."""


class PdfBusy(ProblemError):
    """Another process held the invoice's PDF for longer than a request waits."""

    status = 503
    title = "PDF not ready"

    def __init__(self) -> None:
        super().__init__("The invoice's PDF is being rendered; try again shortly")
        self.headers = {"Retry-After": "2"}


class PdfRendererUnavailable(ProblemError):
    """The rendering processes died twice in a row while rendering: nothing was stored."""

    status = 503
    title = "PDF renderer unavailable"

    def __init__(self) -> None:
        super().__init__("The invoice's PDF could not be rendered now; try again shortly")
        self.headers = {"Retry-After": "5"}


class InvoiceImported(Conflict):
    """Imported invoices follow their billing platform; only paying them happens here."""

    def __init__(self) -> None:
        super().__init__(
            "The invoice was imported from a billing platform; change it there and the next "
            "sync brings the change",
            code="invoice_imported",
        )
