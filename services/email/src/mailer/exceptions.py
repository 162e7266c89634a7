"""Domain errors of the email service, each named after the fact it reports."""

from common.errors import NotFound, ProblemError


class MessageNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("No email with this id")


class WebhookRefused(ProblemError):
    """A webhook whose signature, age or origin does not hold up: nothing was changed.

    401: the sender could not prove it is the provider (a webhook carries no token; its
    signature is its credential). The detail names the check that failed, never the secret
    or the expected signature.
    """

    status = 401
    title = "Webhook refused"
