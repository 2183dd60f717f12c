"""What remote enforcement points follow: the organization's decision state
(``GET v1/state``) and its change feed (``GET v1/state/changes``, server-sent events from the
server's :class:`~aztp_agents.server.feed.StoreWatcher`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query
from starlette.responses import StreamingResponse

from ..change_feed import FeedCursor, position_mark, state_chunks, user_state
from ..schemas import StateDoc
from .dependencies import Caller, Context, ServedAuthority
from .openapi import success

router = APIRouter(tags=["decisions"])

_FEED_DESCRIPTION = (
    "Server-sent events, each with 'id: <organization log position>': 'changes' (the "
    "records of the writes after a position, filtered for the caller), 'reset' (load "
    "GET v1/state, then apply what follows), 'revision' on every write in the store, "
    "'heartbeat' every second. Resume with Last-Event-ID: N:MARK or ?after=N&mark=MARK "
    "(MARK: the 'mark' of the entry at N, from the events or GET v1/state; a bare N is "
    "resumed unchecked)."
)


@router.get(
    "/v1/state",
    responses=success(StateDoc),
    summary="The organization's decision state (for enforcement points)",
)
def state(caller: Caller, authority: ServedAuthority) -> StreamingResponse:
    # Streamed in chunks from a copy of the state (never one JSON document in memory);
    # data.position is where the caller resumes the change feed.
    view = user_state(authority, caller.org_id, caller.user_id)  # errors answer as errors
    mark = position_mark(authority, caller.org_id, view.position)
    return StreamingResponse(state_chunks(view, mark), media_type="application/json")


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
async def changes(
    caller: Caller,
    context: Context,
    after: Annotated[int | None, Query(ge=0, description="resume after this position")] = None,
    mark: Annotated[
        str | None, Query(max_length=64, description="the mark of the entry at 'after'")
    ] = None,
    once: Annotated[bool, Query(description="send what there is now, then end")] = False,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    if after is None and last_event_id:
        position, _, seen = last_event_id.strip().partition(":")
        if position.isdigit():
            after, mark = int(position), (seen or None)
    cursor = FeedCursor(context.authority, caller.org_id, caller.user_id)
    return StreamingResponse(
        context.watcher.events(cursor, after, mark, once=once),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
