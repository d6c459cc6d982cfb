"""Domain failures: one exception type per failure, each carrying its public error code.

The HTTP status of each code is decided in one place, `ferry_core.serving.api.HTTP_STATUS`, so the
core raises domain errors and never thinks about transports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError


class FerryError(Exception):
    """Base of every domain failure; `code` is the public error code of DESIGN.md §3.1."""

    code = "internal_error"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class BadRequest(FerryError):
    """The request is not JSON, or not of the documented shape."""

    code = "bad_request"


class RouteNotFound(FerryError):
    """No route of the API matches the request's method and path."""

    code = "not_found"


class TooLarge(FerryError):
    """The request carries more than the API accepts (instances or bytes)."""

    code = "too_large"


class ModelNotFound(FerryError):
    """No model of that name, or no version in the requested stage."""

    code = "model_not_found"


class VersionNotFound(FerryError):
    """The model exists but not the requested version."""

    code = "version_not_found"


class ValidationFailed(FerryError):
    """Instances broke the model's input schema; `details` holds one entry per problem."""

    code = "validation_failed"


class ModelUnavailable(FerryError):
    """The artifact could not be served: integrity check failed, unsafe or unloadable."""

    code = "model_unavailable"


class DriftReportNotFound(FerryError):
    """No drift report has been written for the model (or at the requested key) yet."""

    code = "report_not_found"


class RegistryConflict(FerryError):
    """A conditional registry write lost a race or found the state it expected changed."""

    code = "conflict"


class PromotionRefused(FerryError):
    """A stage move was refused: integrity, validation, approval or status said no."""

    code = "promotion_refused"


class GovernanceForbidden(FerryError):
    """A governance policy refuses this caller (four eyes), or the caller is not verified."""

    code = "forbidden"


class AuditWriteFailed(FerryError):
    """An audit entry could not be appended (persistent contention); nothing was written."""

    code = "audit_failed"


class AnchorFailed(FerryError):
    """The event is recorded, but its head hash could not be anchored in the lock bucket."""

    code = "anchor_failed"

    def __init__(self, message: str, entry: Any = None) -> None:
        super().__init__(message)
        self.entry = entry


class TransactionRefused(FerryError):
    """A caller's item in an audited transaction failed its condition; nothing was written."""

    code = "conflict"

    def __init__(self, message: str, reasons: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.reasons = reasons


def validation_message(exc: ValidationError, limit: int = 3) -> str:
    """A pydantic ValidationError in the project's own words: where and what, no links.

    `str(exc)` appends a link to pydantic's error pages and echoes the input; users see neither.
    """
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:limit]:
        where = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
