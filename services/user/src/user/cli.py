"""Command-line tools of the user service.

python -m user.cli token --provider mock --sub alice@example.com
    Signs in through the real flow (login, the provider's form, callback) and prints an
    access token, for curl or Postman. The provider step fills in oidc-provider-mock's
    form, so this works against the local stand-in provider, not a real one.

python -m user.cli rotate-keys
    Makes a new signing key now; the previous one stays published, nobody is signed out.

python -m user.cli withdraw-key <kid>
    Emergency, for a key that leaked: stops publishing it now, so every service refuses the
    tokens it signed within seconds (docs/security.md); their users sign in again.
"""

import argparse
import asyncio
import json
import sys
from typing import Any

import httpx

from common.db import create_engine, create_sessionmaker
from user import service
from user.config import get_settings
from user.crypto import SecretBox


class SignInFailed(Exception):
    """A step of the sign-in did not answer as the flow expects."""


def _expect(response: httpx.Response, status: int, step: str) -> None:
    if response.status_code != status:
        # The body is a problem document or the provider's page: no secret of ours in it.
        detail = response.text[:300]
        raise SignInFailed(f"{step}: expected HTTP {status}, got {response.status_code}: {detail}")


async def sign_in(
    http: httpx.AsyncClient, base_url: str, provider: str, subject: str
) -> dict[str, Any]:
    """Walk the browser's way through a sign-in; the callback's token response.

    `http` must keep cookies: the callback is accepted only from the client that started it.
    """
    base = base_url.rstrip("/")
    start = await http.get(f"{base}/api/auth/{provider}/login", follow_redirects=False)
    _expect(start, 302, "login")
    consent = await http.post(
        start.headers["location"],
        data={"sub": subject, "action": "authorize"},
        follow_redirects=False,
    )
    _expect(consent, 302, "provider sign-in form")
    done = await http.get(consent.headers["location"], follow_redirects=False)
    _expect(done, 200, "callback")
    body: dict[str, Any] = done.json()
    return body


async def _token(args: argparse.Namespace) -> None:
    async with httpx.AsyncClient(timeout=15) as http:
        tokens = await sign_in(http, args.base_url, args.provider, args.sub)
    print(json.dumps(tokens, indent=2) if args.json else tokens["access_token"])


async def _rotate_keys(_args: argparse.Namespace) -> None:
    settings = get_settings()
    engine = create_engine(settings.database_url.get_secret_value(), pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            kid = await service.rotate_signing_keys(
                session, settings, SecretBox(settings.secret_key.get_secret_value())
            )
    finally:
        await engine.dispose()
    # The key that now signs was published one rotation ago; the one before it stays published.
    print(f"now signing with key {kid}")


async def _withdraw_key(args: argparse.Namespace) -> None:
    settings = get_settings()
    engine = create_engine(settings.database_url.get_secret_value(), pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            kid = await service.withdraw_signing_key(
                session, settings, SecretBox(settings.secret_key.get_secret_value()), args.kid
            )
    except service.SigningKeyNotFound:
        sys.exit(f"no signing key {args.kid}: nothing withdrawn")
    finally:
        await engine.dispose()
    print(f"withdrew key {args.kid}; now signing with key {kid}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m user.cli",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    token = commands.add_parser("token", help="sign in a local user and print an access token")
    token.add_argument("--provider", default="mock", help="a configured provider's name")
    token.add_argument("--sub", default="alice@example.com", help="the provider's subject")
    token.add_argument(
        "--base-url",
        default="http://127.0.0.1:8101",
        help="the user service as browsers reach it (its USER_PUBLIC_BASE_URL)",
    )
    token.add_argument("--json", action="store_true", help="print every token as JSON")
    token.set_defaults(run=_token)
    rotate = commands.add_parser("rotate-keys", help="start signing with a new key now")
    rotate.set_defaults(run=_rotate_keys)
    withdraw = commands.add_parser("withdraw-key", help="stop publishing a leaked key now")
    withdraw.add_argument("kid", help="the key's id, as in the JWKS and the tokens' header")
    withdraw.set_defaults(run=_withdraw_key)
    args = parser.parse_args(argv)
    try:
        asyncio.run(args.run(args))
    except (SignInFailed, httpx.HTTPError) as exc:
        sys.exit(f"sign-in failed: {exc}")


if __name__ == "__main__":
    main()
