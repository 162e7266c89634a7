"""Settings of the payment service, read from PAYMENT_* and the shared variables."""

from datetime import datetime
from decimal import Decimal
from functools import lru_cache

from cronsim import CronSim, CronSimError
from pydantic import SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from common.config import DEVELOPMENT_PLACEHOLDER, BaseServiceSettings


class PaymentSettings(BaseServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PAYMENT_", extra="ignore")

    service_name: str = "payment"
    database_url: SecretStr = SecretStr(
        f"mysql+asyncmy://payment_svc:{DEVELOPMENT_PLACEHOLDER}@127.0.0.1:3306/payment_svc"
    )
    # Signs listing cursors so a client cannot forge a position it was never given.
    cursor_secret: SecretStr = SecretStr(DEVELOPMENT_PLACEHOLDER)

    # Seed 001's FAKEPAY_URL; the charge is POSTed here, the status read at {url}/{id}.
    fakepay_url: str = "http://127.0.0.1:9000/fakepay"
    # The whole of one call to the provider, connection included; the user waits this long
    # at most before hearing 503.
    provider_timeout_seconds: float = 10
    # Failing to connect at all proves nothing was sent, so it is given up on sooner.
    provider_connect_timeout_seconds: float = 3
    # How long after our own timeout the provider may still be finishing a request it got.
    # Only an attempt older than timeout + grace is taken as "never charged" when the
    # provider does not know it.
    reconcile_grace_seconds: float = 5
    reconcile_every_seconds: float = 5
    # Retry-After of a 503 when the provider is down.
    retry_after_seconds: int = 5

    # The most one top-up adds; larger sums are refused before the card is charged.
    topup_max_amount: Decimal = Decimal("10000.00")
    # Currencies a wallet can be kept in (ISO 4217, comma separated).
    wallet_currencies: str = "USD,EUR,GBP,AUD,NZD,CAD"

    # --- the monthly billing run (docs/payments.md) ---
    # When the run is due: a cron expression read in UTC (default 10:00 on the 1st).
    billing_schedule: str = "0 10 1 * *"
    # A run missed by more than this (the service was down) is not started any more: the
    # next fire time's run picks the invoices up.
    billing_max_lateness_days: int = 25
    # Days after the first declined attempt at which a declined charge is tried again;
    # after the last one a decline is final (FAILED).
    billing_decline_retry_days: str = "1,3,7"
    # Charges in flight at once in one worker.
    billing_concurrency: int = 32
    # Calls to the provider within one attempt on a network error, timeout or 5xx
    # (exponential backoff with jitter), before the invoice waits for a later attempt.
    billing_network_attempts: int = 4
    billing_network_backoff_seconds: float = 0.2
    billing_network_backoff_max_seconds: float = 5
    # How long an invoice left by a provider outage waits before its next attempt.
    billing_unavailable_retry_seconds: int = 300
    # How long a worker's claim on a batch of invoices lasts; a killed worker's invoices
    # are taken over once it has passed. Longer than a batch takes to charge.
    billing_claim_seconds: int = 60
    # The lease that lets one worker start a run (ShedLock's lockAtMostFor).
    billing_lease_seconds: int = 120
    # How often a worker looks for a due run and for invoices to charge.
    billing_tick_seconds: float = 10

    @field_validator("billing_schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            CronSim(value, datetime(2000, 1, 1))
        except CronSimError as exc:
            raise ValueError(f"not a cron expression: {exc}") from None
        return value

    @field_validator("billing_decline_retry_days")
    @classmethod
    def _days(cls, value: str) -> str:
        days = [day.strip() for day in value.split(",") if day.strip()]
        if not all(day.isdigit() and int(day) > 0 for day in days):
            raise ValueError("must be whole days above zero, comma separated, e.g. 1,3,7")
        return value

    @property
    def billing_decline_retry_delays(self) -> list[int]:
        return [int(day) for day in self.billing_decline_retry_days.split(",") if day.strip()]

    @property
    def settle_seconds(self) -> float:
        """Age after which no request of ours can still be waiting on an attempt.

        One second more than timeout and grace: the attempt's time is stored to the second.
        """
        return self.provider_timeout_seconds + self.reconcile_grace_seconds + 1

    @property
    def wallet_currency_set(self) -> frozenset[str]:
        return frozenset(c.strip().upper() for c in self.wallet_currencies.split(",") if c.strip())


@lru_cache
def get_settings() -> PaymentSettings:
    return PaymentSettings()
