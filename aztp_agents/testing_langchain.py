"""The offline LangChain chat model, at its old import path: see :mod:`aztp_langchain.testing`.

The scripted model lives in the LangChain adapter, since the core imports no framework, not
even for testing. This module re-exports its names lazily: importing it imports no framework,
and ``from aztp_agents.testing_langchain import ScriptedChatModel`` imports LangChain then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._reexport import lazy_reexport

if TYPE_CHECKING:  # pragma: no cover - typing only
    from aztp_langchain.testing import ScriptedChatModel, Step, call

__all__ = ["ScriptedChatModel", "Step", "call"]

__getattr__, __dir__ = lazy_reexport(__name__, "aztp_langchain.testing", __all__)
