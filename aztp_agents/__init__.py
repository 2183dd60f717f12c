"""aztp-agents: verifiable AZTP/SPIFFE identities for AI agents and their tools.

``Aztp()`` is an embedded identity authority (SQLite under ``$AZTP_HOME``);
``Aztp(api_key=..., base_url=...)`` talks to an ``aztp-agents serve`` server; ``SyncAztp``
is the same client with blocking methods (also ``Aztp(...).sync``).
``secured(flow=...)`` secures CrewAI and LangChain agents and tools.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import AztpError, ToolCallDenied

# Eager, and light (no client): the function `secured` shares its name with its module, and a
# lazy attribute would read as the module once anything imported `aztp_agents.secured`.
from .secured import identity_of, secured

if TYPE_CHECKING:
    from .client import Aztp, SecuredAgent, SyncAztp
    from .decisions import Decision, Reason
    from .guard import Guard
    from .models import Identity

__version__ = "0.1.0"

__all__ = [
    "Aztp",
    "AztpError",
    "Decision",
    "Guard",
    "Identity",
    "Reason",
    "SecuredAgent",
    "SyncAztp",
    "ToolCallDenied",
    "__version__",
    "identity_of",
    "secured",
]

# The facade is imported on first use, not with the package: `import aztp_agents.cli` (and so
# `aztp-agents --help`) must not pay for SQLAlchemy, the authority and the crypto stack that
# the client pulls in. Each name is fetched once, then stored here as a plain attribute.
_LAZY = {
    "Aztp": ".client",
    "SecuredAgent": ".client",
    "SyncAztp": ".client",
    "Decision": ".decisions",
    "Reason": ".decisions",
    "Guard": ".guard",
    "Identity": ".models",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
