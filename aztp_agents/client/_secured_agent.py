"""What ``secure_connect`` returns: the caller's agent object plus its AZTP identity."""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

from ..wire import Identity
from ._plan import run_async

if TYPE_CHECKING:
    from ._base import ClientBase

__all__ = ["SecuredAgent"]


class SecuredAgent:
    """What ``secure_connect`` returns: the original agent plus its ``identity``.

    Attribute access falls through to the wrapped agent; its coroutine methods verify the
    identity first (as the official client's ``SecureConnection`` does).
    """

    def __init__(self, agent: Any, identity: Identity, client: ClientBase, name: str) -> None:
        self._agent = agent
        self.identity = identity
        self.name = name
        self._client = client

    async def verify(self, identity_flow_id: str | None = None) -> bool:
        # Whichever client issued it (async or blocking), verification is awaited here.
        return await run_async(
            self._client.backend, self._client._verify_identity(self, identity_flow_id)
        )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        attr = getattr(self._agent, name)
        if callable(attr) and asyncio.iscoroutinefunction(attr):

            @functools.wraps(attr)
            async def guarded(*args: Any, **kwargs: Any) -> Any:
                if not await self.verify():
                    raise PermissionError(
                        f"identity verification failed for {self.identity.aztp_id}"
                    )
                return await attr(*args, **kwargs)

            return guarded
        return attr

    def __repr__(self) -> str:
        return f"SecuredAgent(aztp_id={self.identity.aztp_id!r}, valid={self.identity.valid})"
