"""CrewAI adapter: AZTP identities for agents and tools, checked before every tool call.

    from aztp_crewai import secure_crew, secured, identity_of

    crew = secure_crew(crew, flow="prod")       # every tool call now passes the guard
    crew.kickoff()

Enforcement runs in CrewAI's own tool-call hooks (``crewai.hooks``); see ``docs/crewai.md``.
"""

from __future__ import annotations

from ._adapter import (
    DELEGATION_TOOLS,
    guard_of,
    identity_of,
    secure,
    secure_agent,
    secure_crew,
    secured,
    supports,
)

__all__ = [
    "DELEGATION_TOOLS",
    "guard_of",
    "identity_of",
    "secure",
    "secure_agent",
    "secure_crew",
    "secured",
    "supports",
]
