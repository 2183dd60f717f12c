"""aztp-agents: verifiable AZTP/SPIFFE identities for AI agents and their tools.

``Aztp()`` is an embedded identity authority (SQLite under ``$AZTP_HOME``);
``Aztp(api_key=..., base_url=...)`` talks to an ``aztp-agents serve`` server; ``SyncAztp``
is the same client with blocking methods (also ``Aztp(...).sync``).
``secured(flow=...)`` secures CrewAI and LangChain agents and tools.
"""

from __future__ import annotations

from .client import Aztp, SecuredAgent, SyncAztp
from .decisions import Decision, Reason
from .errors import AztpError, ToolCallDenied
from .guard import Guard
from .models import Identity
from .secured import identity_of, secured

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
