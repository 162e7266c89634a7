"""Settings of the invoice service, read from INVOICE_* and the shared variables."""

from datetime import timedelta
from decimal import Decimal
from functools import lru_cache

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from common.config import DEVELOPMENT_PLACEHOLDER, BaseServiceSettings


class InvoiceSettings(BaseServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INVOICE_", extra="ignore")

    service_name: str = "invoice"
    database_url: SecretStr = SecretStr(
        f"mysql+asyncmy://invoice_svc:{DEVELOPMENT_PLACEHOLDER}@127.0.0.1:3306/invoice_svc"
    )
    # Signs listing cursors so a client cannot forge a position it was never given.
    cursor_secret: SecretStr = SecretStr(DEVELOPMENT_PLACEHOLDER)
    default_currency: str = "USD"
    # Seed 001's clients create invoices without a due date: they are due net 30.
    default_payment_terms_days: int = 30
    past_due_sweep_seconds: float = 60

    # The payment service's internal API (not behind the gateway), called while a user waits
    # for a card payment.
    payment_api_url: str = "http://127.0.0.1:8103"
    # Longer than the payment service's own wait on the provider (10 s), so that it is the
    # one to answer 503 when the provider is slow, with what it knows of the charge.
    payment_timeout_seconds: float = 20
    payment_connect_timeout_seconds: float = 3
    # Retry-After of a 503 when the payment service itself cannot be reached.
    payment_retry_after_seconds: int = 5

    # Where rendered PDFs are kept (docs/pdfs.md): an S3 bucket, reached at s3_endpoint_url
    # (or AWS_ENDPOINT_URL, or AWS itself when neither is set) with the usual AWS_*
    # credentials; or, for the smallest set-up, `pdf_store=file:///a/directory`.
    pdf_store: str = "s3"
    pdf_bucket: str = "ledgerline-invoices"
    s3_endpoint_url: str | None = None
    # Recently served PDFs kept in memory per process (0: none); see storage.CachedPdfStore.
    pdf_memory_cache_bytes: int = 32 * 1024 * 1024
    # Renders run in a pool of this many processes per API process (WeasyPrint holds the GIL
    # and would starve the API's event loop in a thread): at most this many at once.
    pdf_render_concurrency: int = 2

    # The wallet fee for emailing an invoice, taken through the payment service.
    send_fee: Decimal = Decimal("0.50")
    send_fee_currency: str = "USD"

    @property
    def default_payment_terms(self) -> timedelta:
        return timedelta(days=self.default_payment_terms_days)


@lru_cache
def get_settings() -> InvoiceSettings:
    return InvoiceSettings()
