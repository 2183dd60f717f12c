"""What remote enforcement points follow: the organization's decision state
(``GET v1/state``) and its change feed (``GET v1/state/changes``, server-sent events from the
server's :class:`~aztp_agents.server.feed.StoreWatcher`)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response, StreamingResponse

from ..feed import state_document
from ..responses import ok
from ..schemas import StateDoc
from .dependencies import Caller, Context, ServedAuthority
from .openapi import success

router = APIRouter(tags=["decisions"])

_FEED_DESCRIPTION = (
    "Server-sent events: 'revision' at once and on every change, "
    "'heartbeat' every second; data is {\"revision\": N}"
)


@router.get(
    "/v1/state",
    responses=success(StateDoc),
    summary="The organization's decision state (for enforcement points)",
)
def state(caller: Caller, authority: ServedAuthority) -> Response:
    return ok(state_document(authority.snapshot(caller.org_id), caller.user_id), "Decision state")


@router.get(
    "/v1/state/changes",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": _FEED_DESCRIPTION,
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
    summary="Change feed (text/event-stream)",
)
async def changes(caller: Caller, context: Context) -> StreamingResponse:
    # ``caller`` is unused but required: the feed is for authenticated callers only
    return StreamingResponse(
        context.watcher.events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
