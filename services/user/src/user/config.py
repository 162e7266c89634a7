"""Settings of the user service, read from USER_* and the shared variables."""

from functools import lru_cache
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from common.config import DEVELOPMENT_PLACEHOLDER, BaseServiceSettings


class OidcProviderSettings(BaseModel):
    """One OpenID Connect provider users may sign in with, found by discovery at its issuer."""

    issuer: str
    client_id: str
    client_secret: SecretStr = SecretStr("")
    scopes: str = "openid email profile"

    @property
    def discovery_url(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"


def _default_providers() -> dict[str, OidcProviderSettings]:
    # The local stand-in provider of `make run` (oidc-provider-mock on port 8109).
    return {
        "mock": OidcProviderSettings(
            issuer="http://127.0.0.1:8109",
            client_id="ledgerline-local",
            client_secret=SecretStr(DEVELOPMENT_PLACEHOLDER),
        )
    }


class UserSettings(BaseServiceSettings):
    model_config = SettingsConfigDict(env_prefix="USER_", extra="ignore")

    service_name: str = "user"
    database_url: SecretStr = SecretStr(
        f"mysql+asyncmy://user_svc:{DEVELOPMENT_PLACEHOLDER}@127.0.0.1:3306/user_svc"
    )
    # Where browsers reach this service (the gateway in front of it, when there is one). The
    # provider redirects to <public_base_url>/api/auth/<provider>/callback; taking it from
    # configuration rather than the Host header keeps a forged Host out of the redirect.
    public_base_url: str = "http://127.0.0.1:8101"
    # USER_OIDC_PROVIDERS='{"google": {"issuer": "https://accounts.google.com", ...}}'
    oidc_providers: dict[str, OidcProviderSettings] = Field(default_factory=_default_providers)
    # Encrypts the signing keys' private parts and the PKCE verifiers at rest.
    secret_key: SecretStr = SecretStr(DEVELOPMENT_PLACEHOLDER)

    access_token_seconds: int = Field(900, ge=60, le=3600)
    refresh_token_days: int = Field(30, ge=1, le=365)
    login_state_seconds: int = Field(600, ge=60, le=3600)
    # For this long after a refresh token is spent, presenting it again returns the same new
    # pair instead of revoking the sign-in: two tabs or devices refreshing together are not a
    # theft. 0 turns it off. Also the window in which a replay of a stolen token goes unseen.
    refresh_reuse_seconds: int = Field(10, ge=0, le=60)
    # A key signs for this long, then stays published as the previous key for as long again.
    signing_key_rotation_seconds: int = 30 * 86_400
    key_rotation_check_seconds: float = 3600
    cleanup_seconds: float = 300

    # Where the login endpoint may send a browser back to: scheme, host, port and a path
    # prefix ("https://app.example.com/auth" allows /auth and below, nothing else). An entry
    # without a port means the scheme's default port; only on a loopback host (127.0.0.1,
    # ::1, localhost) does it allow any port, for native apps (RFC 8252 section 7.3).
    redirect_origins: list[str] = ["http://127.0.0.1", "http://localhost"]
    # Secure cookies are not stored over plain http, so they are on only where TLS is.
    cookie_secure: bool | None = None
    default_currency: str = "USD"

    @model_validator(mode="after")
    def _check(self) -> "UserSettings":
        if self.signing_key_rotation_seconds <= self.access_token_seconds:
            # The previous key must outlive every token it signed, or rotation logs people out.
            raise ValueError("signing_key_rotation_seconds must exceed access_token_seconds")
        for entry in self.redirect_origins:
            parts = urlsplit(entry)
            port = parts.port  # a port that is no number raises ValueError here, not later
            if (
                port == 0
                or parts.scheme not in ("http", "https")
                or not parts.hostname
                or "@" in parts.netloc
                or parts.query
                or parts.fragment
            ):
                raise ValueError(f"redirect_origins: {entry!r} is not scheme://host[:port][/path]")
        if self.environment == "production":
            for name, provider in self.oidc_providers.items():
                if DEVELOPMENT_PLACEHOLDER in provider.client_secret.get_secret_value():
                    raise ValueError(f"oidc_providers.{name}.client_secret is a placeholder")
        return self

    @property
    def secure_cookies(self) -> bool:
        if self.cookie_secure is not None:
            return self.cookie_secure
        return urlsplit(self.public_base_url).scheme == "https"


@lru_cache
def get_settings() -> UserSettings:
    return UserSettings()
