"""One error hierarchy: what kind of failure it is decides the CLI's exit code and the
API's HTTP status — by type, never by matching message text.

- ``InputError``: what the caller gave is wrong (exit 2, HTTP 422). Nothing was started.
- ``RetryLater``: refused for now — the head is recovering, another change holds the
  service (exit 3, HTTP 409). The same request succeeds later, or with ``--wait``.
- ``Failed``: the world failed (a store, a host, Ray) or the change did (exit 1, HTTP
  503); the message says what and what to do.

Pure: no imports of headway, so every layer can raise these.
"""

from __future__ import annotations

EXIT_FAILED, EXIT_INPUT, EXIT_RETRY = 1, 2, 3


class HeadwayError(RuntimeError):
    """Base of every error headway raises on purpose; the message is for the user."""

    exit_code = EXIT_FAILED
    http_status = 503


class InputError(HeadwayError):
    exit_code = EXIT_INPUT
    http_status = 422


class RetryLater(HeadwayError):
    exit_code = EXIT_RETRY
    http_status = 409


class Failed(HeadwayError):
    exit_code = EXIT_FAILED
    http_status = 503


class Busy(RetryLater):
    """Another change holds the service."""


class Cancelled(Failed):
    """A change or repair stopped at a safe point because terminate preempted it."""


def exit_code_of(exc: BaseException) -> int:
    """The CLI's exit code for any exception (input errors that are ValueErrors included)."""
    if isinstance(exc, HeadwayError):
        return exc.exit_code
    if isinstance(exc, ValueError):
        return EXIT_INPUT
    return EXIT_FAILED


def http_status_of(exc: BaseException) -> int:
    if isinstance(exc, HeadwayError):
        return exc.http_status
    if isinstance(exc, ValueError):
        return 422
    return 500


class DeployError(Failed):
    """A deploy or update that could not be done; the message says what to do."""


class PlacementError(InputError, DeployError):
    """--strict: the replicas could not serve without the head (see ``placement``)."""


class HeadRecovering(RetryLater, DeployError):
    """The service's head is down or being replaced: changes wait until it is back."""


class HeadExited(DeployError):
    """A new head's ``ray start`` gave up during its boot (on a loaded machine its raylet
    can miss Ray's 30 s registration window): a new attempt can start at once.
    ``ray_says``: the line of its output that says why."""

    def __init__(self, message: str, ray_says: str) -> None:
        super().__init__(message)
        self.ray_says = ray_says
