"""Logging levels of denials (issue 16.6): one rule, whatever path produced the denial.

A denial the rules took is INFO (unknown agent included), a would-be denial in observe mode
WARNING, a denial because the authority could not be consulted ERROR.
"""

from __future__ import annotations

import logging

import pytest

from aztp_agents import Aztp, Guard
from aztp_agents.server.testing import free_port

GUARD_LOGGER = "aztp_agents.guard"


def _denials(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [
        (r.levelno, r.getMessage())
        for r in caplog.records
        if r.name == GUARD_LOGGER and "DENIED" in r.getMessage()
    ]


def test_rule_denials_are_info_whatever_the_reason(
    client: Aztp, caplog: pytest.LogCaptureFixture
) -> None:
    guard = Guard("logging-flow", client=client)
    enrolled = guard.enroll("agent/logger", ["tool/a"])
    stranger = guard.ensure_identity("tool/b")  # in the flow, not linked
    caplog.set_level(logging.DEBUG, logger="aztp_agents")
    assert not guard.check(None, enrolled.tools["tool/a"], "a").allowed  # no identity at all
    assert not guard.check(enrolled.agent_id, None, "b").allowed
    assert not guard.check(enrolled.agent_id, stranger, "b").allowed  # no_link
    assert guard.check(enrolled.agent_id, enrolled.tools["tool/a"], "a").allowed
    logged = _denials(caplog)
    assert [level for level, _ in logged] == [logging.INFO] * 3
    for (_, text), reason in zip(logged, ["agent_unknown", "tool_unknown", "no_link"], strict=True):
        assert f"[{reason}]" in text, text


def test_observe_mode_would_deny_is_warning(client: Aztp, caplog: pytest.LogCaptureFixture) -> None:
    guard = Guard("logging-observe", client=client, mode="observe")
    enrolled = guard.enroll("agent/watcher", [])
    stranger = guard.ensure_identity("tool/c")
    caplog.set_level(logging.DEBUG, logger="aztp_agents")
    decision = guard.check(enrolled.agent_id, stranger, "c")
    assert not decision.allowed and not decision.blocks
    ((level, text),) = _denials(caplog)
    assert level == logging.WARNING and text.startswith("observe mode, would deny: ")
    assert not guard.check(None, stranger, "c").allowed  # fail-closed path, same rule
    assert _denials(caplog)[-1][0] == logging.WARNING


def test_an_unreachable_authority_is_error(caplog: pytest.LogCaptureFixture) -> None:
    # A real client on a port nobody listens on: every decision fails closed.
    client = Aztp(api_key="k" * 43, base_url=f"http://127.0.0.1:{free_port()}")
    try:
        guard = Guard("logging-down", client=client)
        caplog.set_level(logging.DEBUG, logger="aztp_agents")
        agent = "aztp://down.test/workload/production/node/a"
        tool = "aztp://down.test/workload/production/node/t"
        decision = guard.check(agent, tool, "t")
        assert decision.reason.value == "authority_unavailable" and decision.blocks
        ((level, text),) = _denials(caplog)
        assert level == logging.ERROR and "authority_unavailable" in text
    finally:
        client.close()
