"""Domain errors of the user service, each named after the fact it reports.

Messages never repeat what the client sent or what a provider answered: either may carry a
code, a token or a secret.
"""

from common.errors import InvalidInput, NotFound, ProblemError, Unauthorized


class UnknownProvider(NotFound):
    def __init__(self) -> None:
        super().__init__("No sign-in provider with this name")


class RedirectNotAllowed(InvalidInput):
    def __init__(self) -> None:
        super().__init__(
            "The redirect_uri is not an origin this service may send a browser to",
            field="redirect_uri",
        )


class LoginStateInvalid(ProblemError):
    """The callback does not continue a sign-in this browser started (unknown, used or
    expired state, or another browser's)."""

    status = 400
    title = "Sign-in not in progress"

    def __init__(self) -> None:
        super().__init__(
            "This sign-in attempt is unknown, finished or expired; start again", field="state"
        )


class SignInRejected(ProblemError):
    """The provider refused the sign-in (the user denied it, or the code was refused)."""

    status = 401
    title = "Sign-in failed"
    error_code = "access_denied"

    def __init__(self, detail: str = "The identity provider did not complete the sign-in") -> None:
        super().__init__(detail)


class IdTokenInvalid(SignInRejected):
    """The provider's id_token failed validation: signature, issuer, audience, nonce, expiry."""

    error_code = "invalid_id_token"

    def __init__(self, reason: str) -> None:
        super().__init__(f"The identity provider's id_token was refused: {reason}")


class ProviderUnavailable(ProblemError):
    status = 502
    title = "Identity provider unavailable"
    error_code = "temporarily_unavailable"

    def __init__(self) -> None:
        super().__init__("The identity provider did not answer as expected; try again later")


class RefreshTokenInvalid(Unauthorized):
    def __init__(self) -> None:
        super().__init__("The refresh token is unknown, expired or revoked")


class RefreshTokenReused(RefreshTokenInvalid):
    """A spent refresh token came back: someone holds a copy, so its family is revoked."""


class AccountDeleted(Unauthorized):
    def __init__(self) -> None:
        super().__init__()
