"""OpenAI-style error bodies for every failure the API reports.

Clients written for OpenAI read ``{"error": {"message", "type", "param", "code"}}`` and pick the
exception class from the status (the ``openai`` package raises ``AuthenticationError`` on 401,
``PermissionDeniedError`` on 403, ``RateLimitError`` on 429 ...), so every refusal the server
makes, validation included, goes out in that shape and never as FastAPI's default 422 body.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from knowgate.errors import UserError


class ErrorDetail(BaseModel):
    """The inner object of an OpenAI error body."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """``{"error": {...}}``, as OpenAI sends it."""

    error: ErrorDetail


class ApiError(Exception):
    """A refusal with its HTTP status and OpenAI error fields.

    Args:
        status: HTTP status code.
        message: One line a user can act on.
        type: OpenAI error type (``invalid_request_error``, ``rate_limit_error`` ...).
        code: Machine-readable reason (``invalid_api_key``, ``thread_busy`` ...).
        param: The request field at fault, when one is.
        headers: Extra response headers (``Retry-After``).
    """

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = ErrorBody(error=ErrorDetail(message=message, type=type, param=param,
                                                code=code))
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        """The JSON response carrying this error."""
        return JSONResponse(self.body.model_dump(), status_code=self.status,
                            headers=self.headers)


# Documented in the OpenAPI document for every route that can refuse.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description} for status, description in {
        400: "Invalid request (bad field, too many or too long messages)",
        401: "Missing or unknown API key",
        403: "The key's dollar budget is spent",
        404: "Unknown model",
        409: "Another request on the same thread is running",
        413: "Request body too large",
        429: "The key's rate limit is exceeded",
        503: "The graph could not run",
    }.items()
}


def _location(errors: list[Any]) -> str | None:
    if not errors:
        return None
    loc = [str(part) for part in errors[0].get("loc", ()) if part != "body"]
    return ".".join(loc) or None


def install_error_handlers(app: FastAPI) -> None:
    """Make every error the app raises an OpenAI-style body with a meaningful status."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        first = errors[0] if errors else {}
        param = _location(errors)
        message = f"{param}: {first.get('msg', 'invalid value')}" if param else str(
            first.get("msg", "invalid request body"))
        return ApiError(400, message, code="invalid_request", param=param).response()

    @app.exception_handler(UserError)
    async def _user_error(request: Request, exc: UserError) -> JSONResponse:
        return ApiError(400, str(exc), code="invalid_request").response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return ApiError(exc.status_code, str(exc.detail), type=kind,
                        code=str(exc.status_code), headers=dict(exc.headers or {})).response()
