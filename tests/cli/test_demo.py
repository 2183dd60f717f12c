"""``aztp-agents demo`` (the demo module replaced by a fake)."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from tests.support.cli import Run


def test_demo(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    fake = types.ModuleType("aztp_agents.demo")
    fake.main = lambda home=None: seen.append(home) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "aztp_agents.demo", fake)
    run("demo")
    run("demo", home=False)
    assert seen == [str(run.home), None]
    fake.main = lambda home=None: 1  # type: ignore[attr-defined]
    run("demo", code=1)
    monkeypatch.setitem(sys.modules, "aztp_agents.demo", None)
    run.fails("demo", code=2, contains="demo")
