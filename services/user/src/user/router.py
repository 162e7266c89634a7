"""HTTP endpoints: parse, call one service function, shape the reply.

How sign-in hands over the tokens (docs in services/user/README.md):
- `GET /api/auth/{provider}/login` without `redirect_uri`: the callback answers with the
  tokens as JSON (command-line tools, tests, native apps).
- with `redirect_uri` (a browser app): the callback puts the refresh token in an HttpOnly
  cookie scoped to /api/auth and sends the browser back to `redirect_uri`, with no token in
  the URL; the app then calls `POST /api/auth/refresh` for an access token it keeps in memory.
"""

from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse, RedirectResponse

from common.auth import CurrentUser
from common.db import ReadSessionDep, SessionDep
from common.errors import ProblemError
from user import service
from user.config import UserSettings
from user.dependencies import CurrentAccount, ProvidersDep, ReadAccount, SecretBoxDep, SettingsDep
from user.exceptions import RefreshTokenInvalid, RefreshTokenReused
from user.models import User
from user.schemas import (
    AddressRead,
    ProviderList,
    RefreshRequest,
    TokenResponse,
    UserRead,
    UserUpdate,
)

LOGIN_COOKIE = "ledgerline_login"
REFRESH_COOKIE = "ledgerline_refresh"
COOKIE_PATH = "/api/auth"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

auth_router = APIRouter(prefix="/api/auth", tags=["auth"])
users_router = APIRouter(prefix="/api/users", tags=["users"])
keys_router = APIRouter(tags=["keys"])

ProviderName = Annotated[str, Path(max_length=50, pattern=r"^[a-z0-9_-]+$")]


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = "&".join(part for part in (parts.query, urlencode(params)) if part)
    return urlunsplit(parts._replace(query=query))


def _token_body(tokens: service.IssuedTokens, *, with_refresh_token: bool) -> dict[str, Any]:
    return TokenResponse(
        access_token=tokens.access_token,
        expires_in=tokens.expires_in,
        refresh_token=tokens.refresh_token if with_refresh_token else None,
        user_id=tokens.user_id,
    ).model_dump(mode="json", exclude_none=True)


def _set_refresh_cookie(response: Response, settings: UserSettings, refresh_token: str) -> None:
    # SameSite=Strict: another site cannot make the browser spend or revoke it.
    response.set_cookie(
        REFRESH_COOKIE,
        refresh_token,
        max_age=settings.refresh_token_days * 86_400,
        path=COOKIE_PATH,
        httponly=True,
        secure=settings.secure_cookies,
        samesite="strict",
    )


# --- sign-in ----------------------------------------------------------------------------------


@auth_router.get("/providers", response_model=ProviderList)
async def list_providers(providers: ProvidersDep) -> ProviderList:
    """The providers a user can sign in with, for the login page's buttons."""
    return ProviderList(providers=providers.names())


@auth_router.get(
    "/{provider}/login",
    status_code=status.HTTP_302_FOUND,
    response_class=RedirectResponse,
    responses={
        302: {"description": "To the provider's sign-in page"},
        404: {"description": "No sign-in provider of this name"},
        502: {"description": "The provider's discovery document could not be read"},
    },
)
async def login(
    provider: ProviderName,
    session: SessionDep,
    settings: SettingsDep,
    box: SecretBoxDep,
    providers: ProvidersDep,
    redirect_uri: Annotated[
        str | None,
        Query(
            max_length=2000,
            description="Where the browser returns after sign-in; omit to get tokens as JSON",
        ),
    ] = None,
) -> RedirectResponse:
    """Start a sign-in: redirect to the provider with state, nonce and an S256 PKCE challenge.

    The state is also set in a short-lived HttpOnly cookie; the callback must come back to
    the same client with it."""
    started = await service.start_login(
        session, settings, box, providers.get(provider), redirect_uri
    )
    response = RedirectResponse(started.authorization_url, status_code=302, headers=NO_STORE)
    # SameSite=Lax: the provider's redirect back is a top-level navigation, which carries it.
    response.set_cookie(
        LOGIN_COOKIE,
        started.state,
        max_age=settings.login_state_seconds,
        path=COOKIE_PATH,
        httponly=True,
        secure=settings.secure_cookies,
        samesite="lax",
    )
    return response


@auth_router.get(
    "/{provider}/callback",
    response_model=TokenResponse,
    responses={
        302: {"description": "Back to the app's redirect_uri, refresh token in a cookie"},
        400: {"description": "No sign-in in progress in this browser, or it expired"},
        401: {"description": "The provider refused the sign-in or its id_token did not verify"},
        404: {"description": "No sign-in provider of this name"},
        502: {"description": "The provider could not be reached"},
    },
)
async def callback(
    provider: ProviderName,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    box: SecretBoxDep,
    providers: ProvidersDep,
    code: Annotated[str | None, Query(max_length=2048)] = None,
    state: Annotated[str | None, Query(max_length=200)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Finish a sign-in: exchange the code, validate the id_token, issue platform tokens."""
    oidc = providers.get(provider)
    login = await service.take_login(session, oidc, state, request.cookies.get(LOGIN_COOKIE))
    # The state is spent in its own transaction, before the provider is asked anything: a
    # failure further on rolls back the request's work but never brings the state back,
    # so no state can be replayed, in either mode.
    await session.commit()
    try:
        signed_in = await service.finish_login(
            session, settings, box, oidc, login, code=code, provider_error=error
        )
    except ProblemError as exc:
        if login.redirect_uri is None:
            raise
        # A browser goes back to the app, which shows the failure.
        reason = getattr(exc, "error_code", "sign_in_failed")
        failed = RedirectResponse(_with_query(login.redirect_uri, error=reason), status_code=302)
        failed.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
        return failed
    response: Response
    if signed_in.redirect_uri is None:
        response = JSONResponse(
            _token_body(signed_in.tokens, with_refresh_token=True), headers=NO_STORE
        )
    else:
        response = RedirectResponse(signed_in.redirect_uri, status_code=302, headers=NO_STORE)
        _set_refresh_cookie(response, settings, signed_in.tokens.refresh_token)
    response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
    return response


@auth_router.post(
    "/refresh",
    response_model=TokenResponse,
    responses={401: {"description": "Unknown, expired, revoked or already spent"}},
)
async def refresh(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    box: SecretBoxDep,
    body: RefreshRequest | None = None,
) -> JSONResponse:
    """Spend a refresh token (body, or the browser's cookie) for new tokens.

    Every refresh token is exchanged once. Presented again within a few seconds (the reuse
    interval) while its successor is unused, it gets the same answer again, so two tabs may
    refresh together; any other reuse revokes its whole sign-in."""
    in_body = body.refresh_token if body is not None else None
    token = in_body or request.cookies.get(REFRESH_COOKIE)
    if not token:
        raise RefreshTokenInvalid()
    try:
        tokens = await service.refresh(session, settings, box, token)
    except RefreshTokenReused:
        # The family's revocation must outlive this refusal: commit it before answering.
        await session.commit()
        raise
    # A token that came in the body goes back in the body; a cookie's goes back in the cookie.
    response = JSONResponse(
        _token_body(tokens, with_refresh_token=in_body is not None), headers=NO_STORE
    )
    if in_body is None:
        _set_refresh_cookie(response, settings, tokens.refresh_token)
    return response


@auth_router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    request: Request, session: SessionDep, body: RefreshRequest | None = None
) -> Response:
    """Revoke the sign-in of this refresh token (body or cookie). Unknown tokens are ignored.

    An access token already issued stays valid until it expires (15 minutes at most)."""
    token = (body.refresh_token if body is not None else None) or request.cookies.get(
        REFRESH_COOKIE
    )
    if token:
        await service.logout(session, token)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(REFRESH_COOKIE, path=COOKIE_PATH)
    return response


@auth_router.post(
    "/logout-all",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={401: {"description": "No valid access token"}},
)
async def logout_all(user: CurrentUser, session: SessionDep) -> Response:
    """Revoke every sign-in of the signed-in user: each browser's and device's next refresh
    is refused, and this browser's refresh cookie is cleared.

    Access tokens already issued stay valid until they expire (15 minutes at most)."""
    await service.logout_everywhere(session, user.id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(REFRESH_COOKIE, path=COOKIE_PATH)
    return response


# --- keys -------------------------------------------------------------------------------------


@keys_router.get("/.well-known/jwks.json", summary="Public keys that verify access tokens")
async def jwks(session: ReadSessionDep) -> JSONResponse:
    """The next, current and previous signing keys (public parts only)."""
    return JSONResponse(
        # As short as the services' own cache (common.auth.JwksCache), so a withdrawn key
        # leaves every cache within seconds, a client's included.
        await service.published_keys(session),
        headers={"Cache-Control": "public, max-age=10"},
    )


# --- profile ----------------------------------------------------------------------------------


def _user_read(user: User) -> UserRead:
    address = service.address_of(user)
    return UserRead(
        id=user.id,
        email=user.email,
        name=user.name,
        company_name=user.company_name,
        address=AddressRead(**address) if address is not None else None,
        wallet_balance=user.wallet_balance,
        wallet_currency=user.wallet_currency,
        created_at=user.created_at,
        updated_at=user.updated_at,
    )


@users_router.get("/me", response_model=UserRead)
async def get_me(account: ReadAccount) -> UserRead:
    return _user_read(account)


@users_router.patch("/me", response_model=UserRead)
async def update_me(body: UserUpdate, account: CurrentAccount, session: SessionDep) -> UserRead:
    """Change the fields present in the body; null clears one. The wallet is read-only."""
    changes = body.model_dump(exclude_unset=True)
    return _user_read(await service.update_profile(session, account.id, changes))


@users_router.delete("/me", status_code=status.HTTP_204_NO_CONTENT)
async def delete_me(account: CurrentAccount, session: SessionDep) -> Response:
    """Delete the account: personal data erased, every sign-in revoked, `user.deleted` sent.
    Its access tokens are refused from then on."""
    await service.delete_account(session, account.id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(REFRESH_COOKIE, path=COOKIE_PATH)
    return response
