"""Errors the guard answers with: each carries its HTTP status, and the field or limit it is about."""

from __future__ import annotations


class GuardError(Exception):
    """An error the client gets as {"error": {message, type, param, code}} with `status`."""

    status: int = 500
    kind: str = "server_error"

    def __init__(self, message: str, param: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.status}}


class InvalidInput(GuardError):
    status, kind = 422, "invalid_request_error"


class PayloadTooLarge(GuardError):
    status, kind = 413, "payload_too_large"


class Unauthorized(GuardError):
    status, kind = 401, "authentication_error"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class ModelNotFound(GuardError):
    status, kind = 404, "model_not_found"


class Overloaded(GuardError):
    """Admission refused: the replica already holds its maximum of conversations."""

    status, kind = 503, "overloaded"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, round(retry_after_s)))})


class EngineUnavailable(GuardError):
    """The engine failed for reasons that are not the request's (the replica reports itself unhealthy)."""

    status, kind = 503, "engine_unavailable"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, round(retry_after_s)))})


class DeadlineExceeded(GuardError):
    status, kind = 504, "timeout"
