"""CrewAI adapter: AZTP identities for agents and tools, checked before every tool call.

    from aztp_crewai import secure_crew, secured, identity_of

    crew = secure_crew(crew, flow="prod")       # every tool call now passes the guard
    crew.kickoff()

Enforcement runs in CrewAI's own tool-call hooks (``crewai.hooks``); see ``docs/crewai.md``.
Importing this package registers it with :mod:`aztp_agents.frameworks`, which is how the
universal ``aztp_agents.secured`` finds it. The offline scripted LLM is
:mod:`aztp_crewai.testing`.
"""

from __future__ import annotations

from aztp_agents.frameworks import FrameworkAdapter, register_adapter

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

register_adapter(
    FrameworkAdapter(
        module=__name__,
        frameworks=("crewai",),
        supports=supports,
        secure=secure,
        identity_of=identity_of,
    )
)
