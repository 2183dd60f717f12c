"""The ``{success, message, data}`` envelope and its JSON encoding."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

try:  # optional speed-up
    import orjson

    def _dumps(obj: Any) -> bytes:
        try:
            return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:
            return _std_dumps(obj)

except ImportError:  # pragma: no cover - orjson is optional

    def _dumps(obj: Any) -> bytes:
        return _std_dumps(obj)


def _std_dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def envelope_bytes(success: bool, message: str, data: Any) -> bytes:
    return _dumps({"success": success, "message": message, "data": data})


class EnvelopeResponse(Response):
    media_type = "application/json"

    def __init__(
        self,
        data: Any,
        message: str = "OK",
        *,
        success: bool = True,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            envelope_bytes(success, message, data), status_code=status_code, headers=headers
        )


def ok(data: Any, message: str = "OK") -> EnvelopeResponse:
    return EnvelopeResponse(data, message)


def error(
    status_code: int, message: str, code: str, headers: dict[str, str] | None = None, **extra: Any
) -> EnvelopeResponse:
    return EnvelopeResponse(
        {"code": code, **extra}, message, success=False, status_code=status_code, headers=headers
    )
