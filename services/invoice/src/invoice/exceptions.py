"""Domain errors of the invoice service, each named after the fact it reports."""

from common.errors import Conflict, InvalidInput, NotFound


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


class CardPaymentsUnavailable(InvalidInput):
    def __init__(self) -> None:
        super().__init__(
            "Card payments are not available yet; create the invoice without a card",
            field="card",
        )
