"""Settings every service shares; each service subclasses with its own env prefix."""

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["development", "test", "production"]
# OpenTelemetry's names of its samplers (OTEL_TRACES_SAMPLER); common.tracing builds them.
SamplerName = Literal[
    "parentbased_traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "traceidratio",
    "always_on",
    "always_off",
]

# Values that exist so a fresh clone runs; production refuses to start with any of them.
DEVELOPMENT_PLACEHOLDER = "dev-only-change-me"


def shared(name: str) -> AliasChoices:
    """An alias read without the service prefix, for settings all services share."""
    return AliasChoices(name)


class BaseServiceSettings(BaseSettings):
    """Configuration read from the environment; subclasses set `env_prefix`."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    service_name: str = "service"
    environment: Environment = Field("development", validation_alias=shared("ENVIRONMENT"))
    log_level: str = Field("INFO", validation_alias=shared("LOG_LEVEL"))
    log_format: Literal["console", "json"] = Field("console", validation_alias=shared("LOG_FORMAT"))

    database_url: SecretStr
    database_pool_size: int = 10

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:19092", validation_alias=shared("KAFKA_BOOTSTRAP_SERVERS")
    )
    # See common.kafka.DEFAULT_FETCH_MAX_WAIT_MS; against Apache Kafka 500 costs no latency.
    kafka_fetch_max_wait_ms: int = Field(20, validation_alias=shared("KAFKA_FETCH_MAX_WAIT_MS"))

    auth_jwks_url: str = Field(
        "http://127.0.0.1:8101/.well-known/jwks.json", validation_alias=shared("AUTH_JWKS_URL")
    )
    auth_issuer: str = Field("ledgerline", validation_alias=shared("AUTH_ISSUER"))
    auth_audience: str = Field("ledgerline", validation_alias=shared("AUTH_AUDIENCE"))

    # Keys the fingerprints of requests sent with an Idempotency-Key (common.idempotency).
    idempotency_secret: SecretStr = Field(
        SecretStr(DEVELOPMENT_PLACEHOLDER), validation_alias=shared("IDEMPOTENCY_SECRET")
    )

    # Traces (common.tracing), by OpenTelemetry's own variable names. Without an OTLP
    # endpoint spans are made, and their ids logged, but sent nowhere.
    otel_exporter_otlp_endpoint: str | None = Field(
        None, validation_alias=shared("OTEL_EXPORTER_OTLP_ENDPOINT")
    )
    otel_traces_sampler: SamplerName = Field(
        "parentbased_traceidratio", validation_alias=shared("OTEL_TRACES_SAMPLER")
    )
    otel_traces_sampler_arg: float = Field(
        1.0, ge=0, le=1, validation_alias=shared("OTEL_TRACES_SAMPLER_ARG")
    )
    otel_sdk_disabled: bool = Field(False, validation_alias=shared("OTEL_SDK_DISABLED"))
    # A worker's Prometheus metrics (common.metrics): served on this port when it is not 0.
    # Each worker process on a host needs a port of its own. An API serves them on its own
    # port at /metrics instead.
    metrics_port: int = Field(0, ge=0, le=65535, validation_alias=shared("METRICS_PORT"))
    metrics_host: str = Field("127.0.0.1", validation_alias=shared("METRICS_HOST"))

    # The largest request body the service reads; the gateway has its own, lower, limit.
    max_body_bytes: int = 1_048_576

    @model_validator(mode="after")
    def _refuse_placeholders_in_production(self) -> "BaseServiceSettings":
        if self.environment != "production":
            return self
        for name, value in self:
            secret = value.get_secret_value() if isinstance(value, SecretStr) else value
            if isinstance(secret, str) and DEVELOPMENT_PLACEHOLDER in secret:
                raise ValueError(f"{name} still holds the development placeholder")
        return self
