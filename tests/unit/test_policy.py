"""Policy evaluation, against the official client's known bug."""

from __future__ import annotations

import pytest

from aztp_agents import Aztp


def test_is_action_allowed_fixes_the_official_deny_bug() -> None:
    official = pytest.importorskip("aztp_client").Aztp
    policy = {
        "Statement": [
            {"Effect": "Allow", "Action": ["tool:delete_file"]},
            {"Effect": "Deny", "Action": "tool:delete_file"},
        ]
    }
    assert official.is_action_allowed(None, policy, "tool:delete_file") is True  # the bug
    assert Aztp.is_action_allowed(policy, "tool:delete_file") is False
