"""The installed ``aztp-agents`` script, and remote mode against a real ``aztp-agents serve``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import SCRIPT, Run, script


@pytest.mark.skipif(
    not SCRIPT.exists(), reason="the aztp-agents script is not installed in this environment"
)
def test_installedscript(tmp_path: Path) -> None:
    home = tmp_path / "home"
    issued = script("identity", "issue", "scripted", "--json", home=home)
    assert issued.returncode == 0, issued.stderr
    assert json.loads(issued.stdout)["aztpId"].endswith("/node/scripted")
    missing = script("flow", "show", "nope", home=home)
    assert missing.returncode == 3
    assert missing.stderr.strip().splitlines() == [
        "error: no identity flow with name 'nope'; see 'aztp-agents flow list'"
    ]
    bad_flag = script("identity", "list", "--nope", home=home)
    assert bad_flag.returncode == 2 and len(bad_flag.stderr.strip().splitlines()) == 1
    assert "Traceback" not in missing.stderr + bad_flag.stderr


def test_remote_mode_against_a_real_server(run: Run, served: tuple[str, str, Path]) -> None:
    url, key, server_home = served
    remote = ["--url", url, "--api-key", key]
    agent = run.json(*remote, "identity", "issue", "remote-agent")["aztpId"]
    run.json(*remote, "identity", "issue", "remote-tool")
    flow = run.json(*remote, "flow", "create", "prod")
    run(*remote, "flow", "add", "prod", "remote-agent")
    run(*remote, "flow", "add", flow["_id"], "remote-tool")
    run(*remote, "link", "remote-agent", "remote-tool")
    run(*remote, "verify", "remote-agent", "--flow", "prod", code=0)
    run(*remote, "verify", "remote-agent", "--to", "remote-tool", code=0)
    run(*remote, "flow", "revoke", "prod", agent)
    run(*remote, "verify", "remote-agent", "--flow", "prod", code=1)
    # why a call is denied, through the server (issue 16.3)
    why = run.json(*remote, "explain", "remote-agent", "remote-tool", "--flow", "prod", code=1)
    assert why["reason"] == "agent_revoked_in_flow"
    assert [c["check"] for c in why["checks"] if c["status"] == "fail"] == [
        "agent.not_revoked_in_flow"
    ]
    assert run.json(*remote, "policy", "list") == []
    revoked = run.json(
        *remote,
        "audit",
        "tail",
        "--flow",
        "prod",
        "--subject",
        "remote-agent",
        "--action",
        "flow.*",
    )
    assert [e["action"] for e in revoked] == ["flow.add_identity", "flow.revoke_identity"]
    assert run.json(*remote, "flow", "health", "prod")["status"] == "critical"
    assert json.loads(run(*remote, "bundle").stdout)["keys"]
    assert run(*remote, "svid", "jwt", "remote-agent", "--audience", "x").stdout.count(".") == 2
    actions = [e["action"] for e in run.json(*remote, "audit", "tail", "-n", "0")]
    assert "flow.revoke_identity" in actions
    run(*remote, "audit", "verify", code=0)
    # the same state through the server's home, embedded
    assert [d["name"] for d in run.json("--home", str(server_home), "identity", "list")] == [
        "remote-agent",
        "remote-tool",
    ]
    # errors through the wire keep their meaning
    run.fails(*remote, "identity", "show", "ghost", code=3, contains="ghost")
    run.fails(*remote, "flow", "show", "nope", code=3)
    run.fails("--url", url, "--api-key", "aztp_wrong", "identity", "list", code=4)
    run.fails(*remote, "keys", "create", code=2, contains="--home")
    # the API key is never printed
    for args in (["identity", "list"], ["identity", "show", "remote-agent"], ["audit", "tail"]):
        result = run(*remote, *args)
        assert key not in result.stdout + result.stderr
