"""Errors as OpenAI sends them: raised anywhere before a response starts, they are sent."""

from __future__ import annotations

from typing import Any

MAX_BODY_BYTES = 16 * 1024 * 1024  # the largest request body the server reads


class ApiError(Exception):
    """An OpenAI-style error answer; raised anywhere before a response starts, it is sent."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code
        self.headers = headers or {}
        self.close = close  # the request framing is unknown: the connection cannot be reused

    def body(self) -> dict[str, Any]:
        """The JSON object OpenAI sends, so SDKs parse our errors like theirs."""
        error = {"message": self.message, "type": self.type, "param": self.param}
        return {"error": {**error, "code": self.code}}



def too_large() -> ApiError:
    message = f"The request body is larger than {MAX_BODY_BYTES} bytes."
    return ApiError(413, message, close=True)
