"""Settings of the payment service, read from PAYMENT_* and the shared variables."""

from decimal import Decimal
from functools import lru_cache

from pydantic import SecretStr
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
