"""Domain errors of the sync service, each named after the fact it reports.

None carries the API key: a detail names the field, never its value.
"""

import math

from common.errors import Conflict, InvalidInput, NotFound, ProblemError


class ConnectionNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("No billing platform connection with this id")


class NoConnection(NotFound):
    def __init__(self) -> None:
        super().__init__("No billing platform is connected; POST /api/sync/connections first")


class AlreadyConnected(Conflict):
    def __init__(self) -> None:
        super().__init__(
            "A billing platform is already connected; delete that connection first",
            code="already_connected",
        )


class PlatformUrlNotAllowed(InvalidInput):
    def __init__(self, reason: str) -> None:
        super().__init__(reason, field="base_url")


class SyncRequestedTooSoon(ProblemError):
    """A user asked for a sync again before the interval passed."""

    status = 429
    title = "Too many requests"

    def __init__(self, retry_after_seconds: float) -> None:
        super().__init__("A sync was asked for a moment ago; try again later")
        self.headers["Retry-After"] = str(max(1, math.ceil(retry_after_seconds)))
