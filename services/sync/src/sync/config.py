"""Settings of the sync service, read from SYNC_* and the shared variables."""

from functools import lru_cache

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from common.config import DEVELOPMENT_PLACEHOLDER, BaseServiceSettings

# A 32-byte AES key, base64, that only a development machine may use (refused in production
# like every other placeholder: it holds the placeholder text).
DEVELOPMENT_CONNECTION_KEY = f"dev:{DEVELOPMENT_PLACEHOLDER}"


class SyncSettings(BaseServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SYNC_", extra="ignore")

    service_name: str = "sync"
    database_url: SecretStr = SecretStr(
        f"mysql+asyncmy://sync_svc:{DEVELOPMENT_PLACEHOLDER}@127.0.0.1:3306/sync_svc"
    )

    # Keys that encrypt the platforms' API keys at rest (AES-256-GCM): "id:base64key" pairs,
    # comma separated; the first one encrypts, every one decrypts, so a key can rotate.
    # A key id is stored beside each ciphertext. In development a key is derived from the
    # placeholder, which production refuses.
    connection_key: SecretStr = SecretStr(DEVELOPMENT_CONNECTION_KEY)

    # Which platform hosts a connection may point at ("host" or "host:port", comma
    # separated; "*" allows any). The service calls what an owner types: never internal hosts.
    allowed_platform_hosts: str = "127.0.0.1,localhost"
    # Outside development a platform must be reached over https.
    require_https: bool = False

    # Reading the platform.
    page_size: int = 100
    request_timeout_seconds: float = 10
    # A fault is retried with backoff and jitter for at most this long, then the job parks.
    retry_for_seconds: float = 30
    retry_base_seconds: float = 0.5
    retry_max_wait_seconds: float = 8
    # A Retry-After longer than this parks the job instead of holding a worker.
    max_retry_after_seconds: float = 30
    # Consecutive failed calls to one host that open its circuit breaker, and how long it stays
    # open before one call is let through to test the host.
    breaker_threshold: int = 5
    breaker_open_seconds: float = 30
    # A page larger than this many items is refused as a platform fault.
    max_page_items: int = 1000
    # An amount beyond this is taken for bad data, not an invoice.
    max_amount: str = "9999999999.99"

    # Jobs.
    # Pages a job reads before it hands the rest of the sync to a continuation job at the back
    # of the queue, so a very large account does not hold back the accounts behind it.
    pages_per_slice: int = 20
    # How long a worker's claim on a connection lasts without being renewed (each page
    # renews it); a worker that dies loses its claim after this long.
    lease_seconds: float = 60
    # A parked job waits this long before its first retry, doubling up to the maximum.
    park_base_seconds: float = 30
    park_max_seconds: float = 900
    # How often the worker looks for parked jobs that are due, lost jobs and lapsed leases.
    recover_every_seconds: float = 5
    # A queued job not started within this long is taken as lost and queued again.
    queued_timeout_seconds: float = 600
    # The scheduled sync of every connection (0: none; `sync.cli dispatch` does it on demand).
    dispatch_every_seconds: float = 3600
    # A user may ask for a sync this often (POST /api/sync/runs).
    manual_run_interval_seconds: float = 60


@lru_cache
def get_settings() -> SyncSettings:
    return SyncSettings()
