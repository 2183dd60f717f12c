"""Offline CrewAI test doubles, at their old import path: see :mod:`aztp_crewai.testing`.

The scripted LLM lives in the CrewAI adapter, since the core imports no framework, not even
for testing. This module re-exports its names lazily: ``import aztp_agents.testing`` imports
no framework, and ``from aztp_agents.testing import ScriptedCrewLLM`` imports CrewAI then.
The LangChain double is :mod:`aztp_langchain.testing` (old path
:mod:`aztp_agents.testing_langchain`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._reexport import lazy_reexport

if TYPE_CHECKING:  # pragma: no cover - typing only
    from aztp_crewai.testing import ScriptedCrewLLM, ScriptedToolCall, scripted_crew_llm, tool_call

__all__ = ["ScriptedCrewLLM", "ScriptedToolCall", "scripted_crew_llm", "tool_call"]

__getattr__, __dir__ = lazy_reexport(__name__, "aztp_crewai.testing", __all__)
