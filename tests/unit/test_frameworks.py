"""The framework adapter registry (aztp_agents.frameworks) and the lazy test-double re-exports."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

import aztp_agents
from aztp_agents.errors import ValidationError
from aztp_agents.frameworks import (
    FrameworkAdapter,
    adapter_for,
    framework_modules,
    register_adapter,
)


class _FakeAgent:
    """Stands in for an object of a framework named ``fakefw``."""


_FakeAgent.__module__ = "fakefw.agents"


class _UserAgent(_FakeAgent):
    """A subclass defined in user code: its base class still names the framework."""


_UserAgent.__module__ = "myapp.agents"

_secured: list[tuple[Any, dict[str, Any]]] = []


def _secure(obj: Any, **options: Any) -> Any:
    _secured.append((obj, options))
    return obj


_FAKE = FrameworkAdapter(
    module="tests_fake_adapter",
    frameworks=("fakefw",),
    supports=lambda obj: isinstance(obj, _FakeAgent),
    secure=_secure,
    identity_of=lambda obj: (
        "aztp://example.org/workload/production/node/fake" if isinstance(obj, _FakeAgent) else None
    ),
)
register_adapter(_FAKE)


def test_framework_modules_follow_the_mro_and_lists() -> None:
    assert {"fakefw", "myapp", "builtins"} <= framework_modules(_UserAgent())
    assert "fakefw" in framework_modules([_FakeAgent()])
    assert framework_modules(42) == frozenset({"builtins"})


def test_registered_adapter_is_found_for_its_framework_only() -> None:
    assert adapter_for(_FakeAgent()) is _FAKE
    assert adapter_for(_UserAgent()) is _FAKE
    assert adapter_for(object()) is None
    assert adapter_for("text") is None


def test_secured_and_identity_of_go_through_the_registry() -> None:
    agent = _FakeAgent()
    assert aztp_agents.secured(agent, flow="prod", mode="observe") is agent
    assert _secured[-1] == (agent, {"flow": "prod", "mode": "observe"})
    assert aztp_agents.identity_of(agent) == "aztp://example.org/workload/production/node/fake"
    assert aztp_agents.identity_of(object()) is None


def test_secured_plain_function_secures_what_it_returns() -> None:
    @aztp_agents.secured(flow="dev")
    def build() -> _FakeAgent:
        return _FakeAgent()

    made = build()
    assert _secured[-1] == (made, {"flow": "dev"})
    with pytest.raises(ValidationError, match="does not know how to secure"):
        aztp_agents.secured(object(), flow="dev")


def test_core_imports_no_framework() -> None:
    code = (
        "import sys, aztp_agents, aztp_agents.secured, aztp_agents.frameworks, "
        "aztp_agents.testing, aztp_agents.testing_langchain\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('crewai', 'langchain', 'langchain_core', 'langgraph', 'aztp_crewai', 'aztp_langchain'))\n"
        "assert not loaded, loaded\n"
        "aztp_agents.identity_of(object())\n"
        "assert 'crewai' not in sys.modules and 'langchain_core' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_old_testing_paths_reexport_the_adapters_doubles() -> None:
    pytest.importorskip("crewai")
    pytest.importorskip("langchain_core")
    import aztp_crewai.testing
    import aztp_langchain.testing

    import aztp_agents.testing
    import aztp_agents.testing_langchain

    assert aztp_agents.testing.ScriptedCrewLLM is aztp_crewai.testing.ScriptedCrewLLM
    assert aztp_agents.testing.tool_call is aztp_crewai.testing.tool_call
    assert (
        aztp_agents.testing_langchain.ScriptedChatModel is aztp_langchain.testing.ScriptedChatModel
    )
    assert "scripted_crew_llm" in dir(aztp_agents.testing)
    with pytest.raises(AttributeError):
        _ = aztp_agents.testing.NoSuchDouble
