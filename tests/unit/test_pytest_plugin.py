"""The pytest plugin for users' own tests: an isolated authority per test (issue 16.1)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = """
from aztp_agents import Aztp
from aztp_agents.client import default_client


def test_first(aztp_isolated, aztp_isolated_home):
    aztp_isolated.sync.secure_connect({}, "made-in-first")
    assert Aztp().home == aztp_isolated_home == default_client().home
    assert len(default_client().sync.list_identities()) == 1


def test_second_sees_nothing_of_the_first(aztp_isolated):
    assert aztp_isolated.sync.list_identities() == []
    assert default_client().sync.list_identities() == []
"""


def test_plugin_gives_each_user_test_its_own_authority(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    # By module name, so the test does not depend on the installed entry point (blocked by
    # its name, so an installed one does not register the module twice).
    result = pytester.runpytest_subprocess(
        "-p", "no:aztp_agents", "-p", "aztp_agents.pytest_plugin", "-q"
    )
    result.assert_outcomes(passed=2)
