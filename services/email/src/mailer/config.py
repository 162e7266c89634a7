"""Settings of the email service, read from EMAIL_* and the shared variables."""

from functools import lru_cache

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from common.config import DEVELOPMENT_PLACEHOLDER, BaseServiceSettings

PROVIDER_NAMES = ("sendgrid", "mailgun", "sparkpost", "ses", "smtp")


class EmailSettings(BaseServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EMAIL_", extra="ignore")

    service_name: str = "email"
    database_url: SecretStr = SecretStr(
        f"mysql+asyncmy://email_svc:{DEVELOPMENT_PLACEHOLDER}@127.0.0.1:3306/email_svc"
    )
    cursor_secret: SecretStr = SecretStr(DEVELOPMENT_PLACEHOLDER)

    # The failover order, comma separated; a provider not named is not used.
    providers: str = "sendgrid,mailgun,sparkpost,ses,smtp"
    from_email: str = "invoices@ledgerline.example"
    # The name on notices the platform sends on its own account (payment.failed).
    platform_name: str = "Ledgerline"

    # SendGrid v3 through the `sendgrid` library; the URL is the simulator's locally.
    sendgrid_url: str = "http://127.0.0.1:9200"
    sendgrid_api_key: SecretStr = SecretStr(DEVELOPMENT_PLACEHOLDER)
    # The event webhook's verification key: base64 DER of the ECDSA P-256 public key, as
    # SendGrid's settings page shows it. Empty: SendGrid webhooks are refused.
    sendgrid_webhook_public_key: str = ""

    mailgun_url: str = "http://127.0.0.1:9200"
    mailgun_domain: str = "mg.ledgerline.example"
    mailgun_api_key: SecretStr = SecretStr(DEVELOPMENT_PLACEHOLDER)
    mailgun_webhook_signing_key: SecretStr = SecretStr(DEVELOPMENT_PLACEHOLDER)

    sparkpost_url: str = "http://127.0.0.1:9200"
    sparkpost_api_key: SecretStr = SecretStr(DEVELOPMENT_PLACEHOLDER)

    # Amazon SES through boto3; the endpoint is moto's server locally, empty for AWS itself.
    ses_endpoint_url: str = ""
    ses_region: str = "us-east-1"
    aws_access_key_id: SecretStr = SecretStr(DEVELOPMENT_PLACEHOLDER)
    aws_secret_access_key: SecretStr = SecretStr(DEVELOPMENT_PLACEHOLDER)
    # SES delivery notifications come through this SNS topic; others are refused.
    sns_topic_arn: str = "arn:aws:sns:us-east-1:123456789012:ledgerline-ses-events"
    # Where an SNS signing certificate (and a subscription's confirmation link) may come
    # from: URL prefixes, comma separated. In production only AWS's own host over https; a
    # test adds its simulator's.
    sns_certificate_url_prefixes: str = "https://sns.us-east-1.amazonaws.com/"

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 9025

    # Where the invoice PDFs are (the invoice service writes them; we only read).
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"

    # One call to one provider, connection included.
    provider_timeout_seconds: float = 10
    # After a call in doubt (or a worker's death), how long before the provider is asked
    # whether it has the message: our timeout plus the longest it may still be working on a
    # request we gave up on.
    in_doubt_grace_seconds: float = 5
    # SES and SMTP cannot be asked; an attempt in doubt there waits this long for a delivery
    # webhook before it is taken as never sent (see docs/email.md for what that risks).
    unverifiable_wait_seconds: float = 900
    # Between rounds when no provider took the message: base * 2^round, at most max.
    retry_base_seconds: float = 2
    retry_max_seconds: float = 300
    # A message no provider accepted for this long fails for good, and its fee is given back.
    give_up_after_seconds: float = 86_400

    # Circuit breaker per provider: this many failures in a row open it for ttl seconds,
    # after which one call probes it.
    breaker_threshold: int = 5
    breaker_ttl_seconds: float = 30
    # A provider whose share of bounces among its recent outcomes passes this (with at least
    # `bounce_min_outcomes` outcomes in the window) is moved to the end of the order.
    bounce_rate_limit: float = 0.2
    bounce_min_outcomes: int = 20
    bounce_window_seconds: float = 1800

    # Messages one worker hands to providers at the same time.
    send_concurrency: int = 16
    dispatch_idle_seconds: float = 0.5

    # A webhook older than this (by its own signed timestamp) is refused as a replay.
    webhook_max_age_seconds: int = 600

    @property
    def provider_order(self) -> list[str]:
        names = [name.strip().lower() for name in self.providers.split(",") if name.strip()]
        unknown = sorted(set(names) - set(PROVIDER_NAMES))
        if unknown:
            raise ValueError(f"unknown email providers: {', '.join(unknown)}")
        return names

    @property
    def in_doubt_after_seconds(self) -> float:
        return self.provider_timeout_seconds + self.in_doubt_grace_seconds

    @property
    def certificate_url_prefixes(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.sns_certificate_url_prefixes.split(",") if p.strip())


@lru_cache
def get_settings() -> EmailSettings:
    return EmailSettings()
