"""Turning what the user typed into what the API takes: identities, flows, JSON arguments."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from ..errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    from ..client import Aztp

__all__ = ["aztp_id", "find_flow", "json_object", "parse_json"]

_FLOW_ID = re.compile(r"[0-9a-f]{24}")


async def aztp_id(client: Aztp, value: str) -> str:
    """An AZTP ID from an AZTP ID, a SPIFFE ID or an identity name."""
    from ..ids import AztpId, validate_name

    value = value.strip()
    if value.startswith("aztp://"):
        return str(AztpId.parse(value))
    if value.startswith("spiffe://"):
        return str(AztpId.from_spiffe(value))
    if "://" in value:
        raise ValidationError(
            f"expected an AZTP ID (aztp://...), a SPIFFE ID or an identity name, got {value!r}"
        )
    validate_name(value)
    answer = json.loads(await client.get_identity_by_name(value))
    return str(answer["data"]["aztpId"])


async def find_flow(client: Aztp, value: str) -> dict[str, Any]:
    """A visible flow by id or name (an id wins over a name)."""
    flows = await client.list_flows()
    for flow in flows:
        if flow["_id"] == value:
            return flow
    for flow in flows:
        if flow["name"] == value:
            return flow
    what = "id" if _FLOW_ID.fullmatch(value) else "name"
    raise NotFoundError(f"no identity flow with {what} {value!r}; see 'aztp-agents flow list'")


def parse_json(text: str, what: str) -> Any:
    """``text`` parsed as JSON; ``what`` names the flag or file in the error message."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


def json_object(text: str | None, what: str) -> dict[str, Any] | None:
    """A JSON object argument such as ``--metadata`` (``None`` when not given)."""
    if text is None:
        return None
    value = parse_json(text, what)
    if not isinstance(value, dict):
        raise ValidationError(f'{what} must be a JSON object like \'{{"team": "research"}}\'')
    return value
