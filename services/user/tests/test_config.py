"""Settings refuse what would break sign-in or leak in production."""

import json

import pytest
from pydantic import SecretStr, ValidationError

from common.config import DEVELOPMENT_PLACEHOLDER
from user.config import OidcProviderSettings, UserSettings


def test_production_refuses_the_development_placeholders() -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        UserSettings(environment="production")


def test_production_refuses_a_provider_secret_placeholder() -> None:
    with pytest.raises(ValidationError, match=r"oidc_providers\.google\.client_secret"):
        UserSettings(
            environment="production",
            database_url=SecretStr("mysql+asyncmy://user_svc:real@db/user_svc"),
            secret_key=SecretStr("a real secret"),
            idempotency_secret=SecretStr("another real secret"),
            oidc_providers={
                "google": OidcProviderSettings(
                    issuer="https://accounts.google.com",
                    client_id="id",
                    client_secret=SecretStr(DEVELOPMENT_PLACEHOLDER),
                )
            },
        )


def test_keys_must_rotate_slower_than_tokens_expire() -> None:
    with pytest.raises(ValidationError, match="signing_key_rotation_seconds"):
        UserSettings(access_token_seconds=900, signing_key_rotation_seconds=600)


def test_providers_are_read_from_json_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    auth0 = {"issuer": "https://tenant.auth0.com/", "client_id": "abc", "client_secret": "s"}
    monkeypatch.setenv("USER_OIDC_PROVIDERS", json.dumps({"auth0": auth0}))

    settings = UserSettings()

    provider = settings.oidc_providers["auth0"]
    assert provider.discovery_url == "https://tenant.auth0.com/.well-known/openid-configuration"
    assert provider.scopes == "openid email profile"
    assert settings.secure_cookies is False
