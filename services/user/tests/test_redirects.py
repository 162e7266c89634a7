"""Where a login may send the browser back: the allowlist of redirect_uri, case by case."""

import pytest
from pydantic import ValidationError

from user.config import UserSettings
from user.exceptions import RedirectNotAllowed
from user.service import check_redirect_allowed

ALLOWLIST = [
    "https://app.example.com/auth",
    "https://admin.example.com:8443",
    "http://127.0.0.1",
    "http://[::1]",
    "http://localhost/callback",
]


@pytest.fixture(scope="module")
def settings() -> UserSettings:
    return UserSettings(redirect_origins=ALLOWLIST)


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://app.example.com/auth",
        "https://app.example.com/auth/",
        "https://app.example.com/auth/done?tab=1",
        "https://app.example.com:443/auth/done",
        "https://admin.example.com:8443/anything",
        # Loopback: a native app listens on whatever port it was given (RFC 8252 7.3).
        "http://127.0.0.1/",
        "http://127.0.0.1:53124/cb",
        "http://[::1]:61000/cb",
        "http://localhost:8000/callback/x",
    ],
)
def test_allowed_redirects(settings: UserSettings, redirect_uri: str) -> None:
    check_redirect_allowed(settings, redirect_uri)


@pytest.mark.parametrize(
    "redirect_uri",
    [
        # Another port of a host that is not loopback, with or without an explicit port.
        "https://app.example.com:8443/auth",
        "https://admin.example.com/anything",
        "https://admin.example.com:9443/anything",
        # Another scheme, host or path.
        "http://app.example.com/auth",
        "https://app.example.com.evil.example/auth",
        "https://evil.example/auth",
        "https://app.example.com/authority",
        "https://app.example.com/",
        "https://app.example.com/auth/../admin",
        "https://app.example.com/auth/%2e%2e/admin",
        "http://localhost:8000/other",
        # User-info and fragments, even on an allowed place.
        "https://user:pass@app.example.com/auth",
        "https://user@app.example.com/auth",
        "https://@app.example.com/auth",
        "https://app.example.com/auth#token",
        "https://app.example.com/auth#",
        "http://127.0.0.1:5000/cb#x",
        "http://user:pass@127.0.0.1:5000/cb",
        # What a browser reads differently from urlsplit.
        "https://app.example.com\\@evil.example/auth",
        "https://app.example.com/auth\\..\\admin",
        "https://app.example.com/auth\n",
        "https://app.exämple.com/auth",
        "javascript:alert(1)",
        "//app.example.com/auth",
        "https://app.example.com:99999/auth",
        "",
    ],
)
def test_refused_redirects(settings: UserSettings, redirect_uri: str) -> None:
    with pytest.raises(RedirectNotAllowed):
        check_redirect_allowed(settings, redirect_uri)


def test_without_an_allowlist_only_loopback_gets_any_port() -> None:
    defaults = UserSettings()

    check_redirect_allowed(defaults, "http://127.0.0.1:4321/cb")
    check_redirect_allowed(defaults, "http://localhost:4321/cb")
    for refused in ("http://example.com:4321/cb", "http://10.0.0.1:4321/cb"):
        with pytest.raises(RedirectNotAllowed):
            check_redirect_allowed(defaults, refused)


def test_an_empty_allowlist_allows_nothing() -> None:
    with pytest.raises(RedirectNotAllowed):
        check_redirect_allowed(UserSettings(redirect_origins=[]), "http://127.0.0.1:4321/cb")


@pytest.mark.parametrize(
    "entry",
    [
        "app.example.com",
        "ftp://app.example.com",
        "https://user:pass@app.example.com",
        "https://app.example.com/auth?x=1",
        "https://app.example.com/auth#x",
        "https://app.example.com:port",
    ],
)
def test_settings_refuse_an_entry_that_is_not_a_place(entry: str) -> None:
    with pytest.raises(ValidationError, match="redirect_origins"):
        UserSettings(redirect_origins=[entry])
