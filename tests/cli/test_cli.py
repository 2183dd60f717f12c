"""The ``aztp-agents`` command line: every command on a temporary ``--home``, bad input, JSON
output, exit codes, one-line errors, audit tampering, the installed script, and remote mode
against a real ``aztp-agents serve`` process."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aztp_agents.cli import app

SCRIPT = Path(sys.executable).with_name("aztp-agents")


# ============================================================================ helpers


class Run:
    """``run(*args, code=0)``: invoke the CLI on this test's home; check the exit code."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.runner = CliRunner()

    def __call__(
        self, *args: str, code: int | None = 0, env: dict[str, str] | None = None, home: bool = True
    ) -> Any:
        argv = (["--home", str(self.home)] if home else []) + list(args)
        result = self.runner.invoke(app, argv, env=env)
        if code is not None:
            assert result.exit_code == code, (
                f"{argv} -> {result.exit_code}, wanted {code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def json(self, *args: str, code: int = 0) -> Any:
        return json.loads(self(*args, "--json", code=code).stdout)

    def fails(self, *args: str, code: int, contains: str = "") -> str:
        """A failure: exit ``code``, nothing on stdout, exactly one ``error:`` line on stderr."""
        result = self(*args, code=code)
        lines = result.stderr.splitlines()
        assert len(lines) == 1, f"{args}: expected one error line, got {result.stderr!r}"
        assert lines[0].startswith("error: "), lines[0]
        assert "Traceback" not in result.stderr
        assert result.stdout == "", result.stdout
        assert contains.lower() in lines[0].lower(), lines[0]
        return lines[0]


def _close_embedded(home: Path) -> None:
    from aztp_agents import client as client_module

    with client_module._AUTHORITIES_LOCK:
        authority = client_module._AUTHORITIES.pop((home / "aztp.db").resolve(), None)
    if authority is not None:
        with contextlib.suppress(Exception):
            authority.store.close()


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Run]:
    for var in ("AZTP_HOME", "AZTP_URL", "AZTP_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    yield Run(home)
    _close_embedded(home)


@pytest.fixture
def crew(run: Run) -> dict[str, str]:
    """Two identities in flow ``prod`` (public), linked."""
    agent = run.json("identity", "issue", "researcher")["aztpId"]
    tool = run.json("identity", "issue", "tool-search")["aztpId"]
    flow = run.json("flow", "create", "prod", "--public", "--tag", "demo")["_id"]
    run("flow", "add", "prod", "researcher")
    run("flow", "add", flow, tool)
    run("link", agent, tool)
    return {"agent": agent, "tool": tool, "flow": flow}


def _jwt_part(token: str, i: int) -> dict[str, Any]:
    part = token.split(".")[i]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


# ============================================================================ basics


def test_no_arguments_shows_help_and_help_works(run: Run) -> None:
    result = run(code=2, home=False)
    assert "identity" in result.stdout and "Usage" in result.stdout
    assert "flow" in run("--help", home=False).stdout
    assert "issue" in run("identity", "--help").stdout


def test_global_json_flag_before_the_command(run: Run) -> None:
    run("identity", "issue", "alpha")
    docs = json.loads(run("--json", "identity", "list").stdout)
    assert [d["name"] for d in docs] == ["alpha"]


def test_home_from_environment(run: Run) -> None:
    run("identity", "issue", "from-flag")
    result = run("--json", "identity", "list", home=False, env={"AZTP_HOME": str(run.home)})
    assert [d["name"] for d in json.loads(result.stdout)] == ["from-flag"]


# ============================================================================ identities


def test_identity_issue_list_show(run: Run) -> None:
    human = run("identity", "issue", "researcher").stdout
    assert "aztp://aztp.local/workload/production/node/researcher" in human
    assert "spiffe://aztp.local/workload/production/node/researcher" in human
    assert "PRIVATE KEY" not in human

    doc = run.json(
        "identity",
        "issue",
        "planner",
        "--global",
        "--environment",
        "staging",
        "--trust-domain",
        "example.org",
        "--parent",
        "researcher",
    )
    assert doc["aztpId"] == "aztp://example.org/workload/staging/node/planner"
    assert doc["isGlobalIdentity"] is True and doc["identityType"] == "global"
    assert doc["parentIdentity"].endswith("/researcher")
    assert doc["spiffeId"] == "spiffe://example.org/workload/staging/node/planner"
    assert "privateKey" not in json.dumps(doc) and "PRIVATE KEY" not in json.dumps(doc)

    again = run.json("identity", "issue", "researcher")  # idempotent by name
    assert (
        again["aztpId"].endswith("/researcher")
        and again["_id"] == run.json("identity", "show", "researcher")["_id"]
    )

    listed = run.json("identity", "list")
    assert sorted(d["name"] for d in listed) == ["planner", "researcher"]
    assert "researcher" in run("identity", "list").stdout

    by_name = run.json("identity", "show", "planner")
    by_id = run.json("identity", "show", doc["aztpId"])
    by_spiffe = run.json("identity", "show", doc["spiffeId"])
    assert by_name["_id"] == by_id["_id"] == by_spiffe["_id"]
    assert by_name["flows"] == []
    assert "staging" in run("identity", "show", "planner").stdout


def test_identity_issue_writes_credentials(run: Run, tmp_path: Path) -> None:
    out = tmp_path / "creds"
    doc = run.json("identity", "issue", "worker", "--out", str(out))
    assert sorted(p.name for p in out.iterdir()) == ["bundle.pem", "svid.key", "svid.pem"]
    assert stat.S_IMODE((out / "svid.key").stat().st_mode) == 0o600
    assert "BEGIN CERTIFICATE" in (out / "svid.pem").read_text()
    assert "PRIVATE KEY" in (out / "svid.key").read_text()
    assert len(doc["files"]) == 3


def test_identity_revoke_and_reissue(run: Run, crew: dict[str, str]) -> None:
    answer = run.json("identity", "revoke", "researcher", "--reason", "compromised")
    assert answer["status"] == "revoked" and answer["reason"] == "compromised"
    shown = run.json("identity", "show", "researcher")
    assert shown["status"] == "revoked" and shown["revocationReason"] == "compromised"
    assert "compromised" in run("identity", "show", "researcher").stdout
    run.fails("identity", "revoke", "researcher", code=2, contains="already revoked")
    run("verify", "researcher", code=1)
    run.fails("identity", "issue", "researcher", code=1, contains="reissue")

    reissued = run.json("identity", "reissue", crew["agent"])
    assert reissued["status"] == "active" and "privateKey" not in reissued
    assert "reissued" in run("identity", "reissue", "researcher").stdout
    run("verify", "researcher", code=0)
    assert "revoked" in run("identity", "revoke", "tool-search").stdout


# ============================================================================ flows


def test_flow_lifecycle(run: Run, crew: dict[str, str]) -> None:
    private = run.json(
        "flow", "create", "staging", "--description", "pre-prod", "--metadata", '{"team": "r"}'
    )
    assert private["discoverable"] == "private" and private["metadata"] == {"team": "r"}
    assert "created" in run("flow", "create", "other", "--public").stdout
    flows = run.json("flow", "list")
    assert [f["name"] for f in flows] == ["prod", "staging", "other"]
    assert "prod" in run("flow", "list").stdout

    shown = run.json("flow", "show", "prod")
    assert shown["_id"] == crew["flow"] and shown["tags"] == ["demo"]
    assert {m["aztpId"] for m in shown["identities"]} == {crew["agent"], crew["tool"]}
    assert run.json("flow", "show", crew["flow"])["name"] == "prod"
    assert "researcher" in run("flow", "show", "prod").stdout
    assert "no members" in run("flow", "show", "staging").stdout
    assert run.json("identity", "show", "researcher")["flows"][0]["name"] == "prod"

    # flow-scoped revocation: invalid in the flow, valid globally
    answer = run.json("flow", "revoke", "prod", "researcher", "--reason", "suspicious")
    assert answer["identityFlowId"] == crew["flow"]
    run.fails("flow", "revoke", "prod", "researcher", code=2, contains="already revoked")
    verdict = run.json("verify", "researcher", "--flow", "prod", code=1)
    assert verdict["valid"] is False and verdict["reason"] == "identity_revoked_in_flow"
    run("verify", "researcher", code=0)

    health = run.json("flow", "health", "prod")
    assert health["status"] == "critical" and health["valid"] == 1 and health["total"] == 2
    assert "critical" in run("flow", "health", "prod").stdout

    # remove + re-add keeps the revocation; reinstate clears it
    assert "removed" in run("flow", "remove", "prod", "researcher").stdout
    run("verify", "researcher", "--flow", "prod", code=1)
    assert "added" in run("flow", "add", "prod", "researcher").stdout
    run("verify", "researcher", "--flow", "prod", code=1)
    assert "reinstated" in run("flow", "reinstate", "prod", "researcher").stdout
    run("verify", "researcher", "--flow", "prod", code=0)
    run.fails("flow", "reinstate", "prod", "researcher", code=3)
    assert run.json("flow", "health", crew["flow"])["status"] == "healthy"
    assert "revoked" in run("flow", "revoke", "prod", "tool-search").stdout

    assert run.json("flow", "delete", "staging")["deleted"] is True
    assert "deleted" in run("flow", "delete", "other").stdout
    assert [f["name"] for f in run.json("flow", "list")] == ["prod"]
    run.fails("flow", "create", "prod", code=2, contains="already exists")


def test_empty_lists_say_what_to_do(run: Run) -> None:
    assert "identity issue" in run("identity", "list").stdout
    assert "flow create" in run("flow", "list").stdout
    assert run.json("flow", "list") == []


# ============================================================================ links, verify, policies


def test_link_verify_unlink(run: Run, crew: dict[str, str]) -> None:
    assert run("verify", "researcher", "--flow", "prod").stdout.startswith("valid")
    assert run.json("verify", crew["agent"])["valid"] is True
    connect = run.json("verify", "researcher", "--to", "tool-search")
    assert connect["valid"] is True and connect["to"] == crew["tool"]
    run("verify", "tool-search", "--to", "researcher", code=0)  # 'linked' is symmetric

    run.json("identity", "issue", "db")
    link = run.json(
        "link", "researcher", "db", "--type", "data_pipeline", "--metadata", '{"why": "etl"}'
    )
    assert link["relationshipType"] == "data_pipeline"
    run("verify", "researcher", "--to", "db", code=0)
    run("verify", "db", "--to", "researcher", code=1)  # directed

    removed = run.json("unlink", "researcher", "db", "--type", "data_pipeline")
    assert removed["removed"] == 1
    assert "removed 1" in run("unlink", "researcher", "tool-search").stdout
    result = run("verify", "researcher", "--to", "tool-search", code=1)
    assert result.stdout.startswith("invalid")
    run.fails("unlink", "researcher", "tool-search", code=3)
    run.fails(
        "link",
        "researcher",
        "tool-search",
        "--type",
        "Not-Valid",
        code=2,
        contains="relationship_type",
    )
    run.fails("link", "researcher", "researcher", code=2, contains="itself")


def test_policies(run: Run, crew: dict[str, str], tmp_path: Path) -> None:
    doc = {"Statement": [{"Effect": "Allow", "Action": ["connect", "tool:*"]}]}
    path = tmp_path / "allow.json"
    path.write_text(json.dumps(doc))
    created = run.json(
        "policy", "create", "allow-all", "--file", str(path), "--code", "policy:allow"
    )
    assert created["code"] == "policy:allow"
    deny = run.json(
        "policy", "create", "deny", "--statement", '{"Effect": "Deny", "Action": "connect"}'
    )
    assert deny["code"].startswith("policy:")
    assert (
        "created"
        in run(
            "policy", "create", "listy", "--statement", '[{"Effect": "Audit", "Action": "x"}]'
        ).stdout
    )

    assert run.json("policy", "attach", "researcher", "policy:allow")["attached"] is True
    assert "attached" in run("policy", "attach", "researcher", deny["code"]).stdout
    shown = run.json("policy", "show", "researcher")
    assert {p["code"] for p in shown} == {"policy:allow", deny["code"]}
    assert "policy:allow" in run("policy", "show", "researcher").stdout

    run("verify", "researcher", "--to", "tool-search", "--policy", "policy:allow", code=0)
    run("verify", "researcher", "--to", "tool-search", "--policy", deny["code"], code=1)

    assert run.json("policy", "detach", "researcher", deny["code"])["attached"] is False
    assert "detached" in run("policy", "detach", "researcher", "policy:allow").stdout
    assert run.json("policy", "show", "researcher") == []
    assert "no policies" in run("policy", "show", "researcher").stdout

    run.fails(
        "policy", "create", "x", "--statement", "{bad json", code=2, contains="not valid JSON"
    )
    run.fails(
        "policy",
        "create",
        "x",
        "--statement",
        '{"Effect": "Maybe", "Action": "a"}',
        code=2,
        contains="invalid policy",
    )
    run.fails("policy", "create", "x", code=2, contains="exactly one")
    run.fails(
        "policy",
        "create",
        "x",
        "--file",
        str(path),
        "--statement",
        "{}",
        code=2,
        contains="exactly one",
    )
    run.fails(
        "policy",
        "create",
        "x",
        "--file",
        str(tmp_path / "missing.json"),
        code=2,
        contains="cannot read",
    )
    run.fails("policy", "create", "x", "--statement", "42", code=2)
    run.fails("policy", "create", "dup", "--statement", "{}", "--code", "policy:allow", code=2)
    run.fails("policy", "attach", "researcher", "policy:nope", code=3)
    run.fails("verify", "researcher", "--policy", "policy:allow", code=2, contains="--to")
    run.fails("verify", "researcher", "--to", "tool-search", "--flow", "prod", code=2)


# ============================================================================ credentials


def test_bundle(run: Run, crew: dict[str, str]) -> None:
    jwks = json.loads(run("bundle").stdout)
    uses = {k["use"] for k in jwks["keys"]}
    assert uses == {"x509-svid", "jwt-svid"} and "spiffe_sequence" in jwks
    assert json.loads(run("bundle", "--json").stdout) == jwks

    run("identity", "issue", "other", "--trust-domain", "second.example")
    run.fails("bundle", code=2, contains="--trust-domain")
    assert json.loads(run("bundle", "--trust-domain", "aztp.local").stdout) == jwks
    assert json.loads(run("bundle", "--trust-domain", "second.example").stdout)["keys"]
    run.fails("bundle", "--trust-domain", "unknown.example", code=3)


def test_svid_jwt(run: Run, crew: dict[str, str]) -> None:
    result = run("svid", "jwt", "researcher", "--audience", "https://api.example")
    token = result.stdout.strip()
    assert result.stdout.count("\n") == 1 and token.count(".") == 2
    header, claims = _jwt_part(token, 0), _jwt_part(token, 1)
    assert header["alg"] == "ES256"
    assert claims["sub"] == "spiffe://aztp.local/workload/production/node/researcher"
    assert claims["aud"] in ("https://api.example", ["https://api.example"])
    assert claims["exp"] - claims["iat"] == 300

    answer = run.json(
        "svid", "jwt", crew["agent"], "--audience", "a", "--audience", "b", "--ttl", "60"
    )
    assert answer["audience"] == ["a", "b"] and _jwt_part(answer["token"], 1)["aud"] == ["a", "b"]

    run.fails("svid", "jwt", "researcher", code=2, contains="--audience")
    run.fails("svid", "jwt", "researcher", "--audience", "a", "--ttl", "0", code=2)
    run("identity", "revoke", "researcher")
    run.fails("svid", "jwt", "researcher", "--audience", "a", code=4, contains="revoked")


# ============================================================================ audit


def test_audit_tail(run: Run, crew: dict[str, str]) -> None:
    entries = run.json("audit", "tail")
    assert [e["action"] for e in entries][-2:] == ["flow.add_identity", "link.create"]
    assert len(run.json("audit", "tail", "-n", "2")) == 2
    assert len(run.json("audit", "tail", "-n", "0")) == len(entries)
    flows = run.json("audit", "tail", "--action", "flow.*")
    assert flows and {e["action"] for e in flows} <= {"flow.create", "flow.add_identity"}
    assert "link.create" in run("audit", "tail").stdout
    assert "no audit entries" in run("audit", "tail", "--action", "nothing.*").stdout
    run.fails("audit", "tail", "-n", "-1", code=2)


@pytest.mark.parametrize("tamper", ["edit", "drop_middle", "drop_last"])
def test_audit_verify_detects_tampering(run: Run, crew: dict[str, str], tamper: str) -> None:
    result = run("audit", "verify")
    assert "intact" in result.stdout
    report = run.json("audit", "verify")
    assert report["ok"] is True and report["entries"] >= 5

    db = sqlite3.connect(run.home / "aztp.db")
    with db:
        if tamper == "edit":
            db.execute(
                "UPDATE audit SET subject = 'aztp://evil.example/workload/x/node/y' WHERE seq = 3"
            )
        elif tamper == "drop_middle":
            db.execute("DELETE FROM audit WHERE seq = 2")
        else:
            db.execute("DELETE FROM audit WHERE seq = (SELECT MAX(seq) FROM audit)")
    db.close()

    broken = run("audit", "verify", code=1)
    assert broken.stderr.startswith("audit chain broken:") and len(broken.stderr.splitlines()) == 1
    report = run.json("audit", "verify", code=1)
    assert report["ok"] is False and report["problem"]


# ============================================================================ organizations, keys, users


def test_org_create_and_its_key(run: Run) -> None:
    org = run.json("org", "create", "acme", "--trust-domain", "acme.example")
    assert org["org"] == "acme" and org["trust_domain"] == "acme.example"
    key = org["api_key"]
    assert key.startswith("aztp_") and len(key) >= 40

    # the key acts as acme: its identities land in acme's trust domain, not the local org's
    doc = run.json("--api-key", key, "identity", "issue", "bot")
    assert doc["aztpId"] == "aztp://acme.example/workload/production/node/bot"
    assert run.json("identity", "list") == []
    assert [d["name"] for d in run.json("--api-key", key, "identity", "list")] == ["bot"]

    human = run("org", "create", "globex", "--trust-domain", "globex.example")
    assert "globex.example" in human.stdout and "shown only this once" in human.stderr
    run.fails(
        "org",
        "create",
        "acme",
        "--trust-domain",
        "other.example",
        code=2,
        contains="already exists",
    )
    run.fails(
        "org",
        "create",
        "evil",
        "--trust-domain",
        "acme.example",
        code=4,
        contains="another organization",
    )
    run.fails("org", "create", "bad", "--trust-domain", "Not A Domain", code=2)
    run.fails("org", "create", "nodomain", code=2, contains="--trust-domain")


def test_keys_and_users(run: Run) -> None:
    local = run.json("keys", "create")
    assert local["org"] == "local" and local["api_key"].startswith("aztp_") and local["id"]
    run.json("org", "create", "acme", "--trust-domain", "acme.example")
    assert run.json("user", "create", "bob", "--org", "acme")["user"] == "bob"
    assert "created user carol" in run("user", "create", "carol", "--org", "acme").stdout
    run.fails("user", "create", "bob", "--org", "acme", code=2, contains="already exists")

    bob = run.json("keys", "create", "--org", "acme", "--user", "bob")
    assert bob["org"] == "acme" and bob["user"] == "bob"
    assert "shown only this once" in run("keys", "create", "--org", "acme").stderr

    listed = run("keys", "list", "--org", "acme")
    assert bob["id"] in listed.stdout and bob["api_key"] not in listed.stdout
    keys = run.json("keys", "list", "--org", "acme")
    assert len(keys) == 3 and bob["api_key"] not in json.dumps(keys)
    assert [k["id"] for k in run.json("keys", "list")] == [local["id"]]

    # rotate: a new key for the same user; the old one is refused at once
    rotated = run.json("keys", "rotate", bob["id"], "--org", "acme")
    assert rotated["revoked"] == bob["id"] and rotated["api_key"] != bob["api_key"]
    run.fails("--api-key", bob["api_key"], "identity", "list", code=4)
    run("--api-key", rotated["api_key"], "identity", "list")
    after = {k["id"]: k for k in run.json("keys", "list", "--org", "acme")}
    assert (
        after[bob["id"]]["revokedAt"]
        and after[rotated["id"]]["userId"] == after[bob["id"]]["userId"]
    )
    run.fails("keys", "rotate", bob["id"], "--org", "acme", code=3)
    assert "shown only this once" in run("keys", "rotate", rotated["id"], "--org", "acme").stderr

    assert run.json("keys", "revoke", local["id"])["revoked"] is True
    assert "revoked" in run("keys", "list").stdout
    run.fails("--api-key", local["api_key"], "identity", "list", code=4, contains="API key")
    assert "revoked API key" in run("keys", "revoke", run.json("keys", "create")["id"]).stdout
    run.fails("keys", "revoke", local["id"], code=3)
    run.fails("keys", "revoke", "nope", "--org", "acme", code=3)
    run.fails("keys", "create", "--org", "nope", code=3, contains="org create")
    run.fails("keys", "create", "--org", "acme", "--user", "ghost", code=3)
    run.fails("keys", "list", "--org", "nope", code=3)


def test_admin_commands_refuse_a_remote_url(run: Run) -> None:
    for args in (
        ["org", "create", "a", "--trust-domain", "a.example"],
        ["keys", "create"],
        ["keys", "list"],
        ["keys", "revoke", "x"],
        ["keys", "rotate", "x"],
        ["user", "create", "u"],
        ["serve"],
    ):
        run.fails("--url", "http://127.0.0.1:9", *args, code=2, contains="--home")
    # with AZTP_URL only in the environment, an explicit --home means the embedded store
    result = run(
        "keys", "create", "--json", env={"AZTP_URL": "http://127.0.0.1:9", "AZTP_API_KEY": "x"}
    )
    assert json.loads(result.stdout)["org"] == "local"
    result = run(
        "keys",
        "list",
        code=2,
        home=False,
        env={"AZTP_URL": "http://127.0.0.1:9", "AZTP_HOME": str(run.home)},
    )
    assert "AZTP_URL" in result.stderr and len(result.stderr.splitlines()) == 1


# ============================================================================ serve, demo


def test_serve_calls_the_server(run: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[Any, ...]] = []
    fake = types.ModuleType("aztp_agents.server")
    fake.run = lambda *args: calls.append(args)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "aztp_agents.server", fake)
    result = run("serve", "--port", "8711")
    assert calls == [(run.home, "127.0.0.1", 8711, None, None)]
    assert "http://127.0.0.1:8711" in result.stderr

    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("y")
    run("serve", "--host", "0.0.0.0", "--tls-cert", str(cert), "--tls-key", str(key))
    assert calls[-1] == (run.home, "0.0.0.0", 8700, str(cert), str(key))

    run.fails("serve", "--tls-cert", str(cert), code=2, contains="both")
    run.fails(
        "serve",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(tmp_path / "none.pem"),
        code=2,
        contains="no such file",
    )
    run.fails("serve", "--port", "70000", code=2)
    run.fails("serve", "--port", "http", code=2)


def test_serve_without_the_server_extra(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aztp_agents.server", None)
    run.fails("serve", code=2, contains="aztp-agents[server]")


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


# ============================================================================ bad input


BAD_INPUT: list[tuple[list[str], int, str]] = [
    (["identity", "show", "ghost"], 3, "no identity named 'ghost'"),
    (["identity", "show", "aztp://aztp.local/workload/production/node/ghost"], 3, "not found"),
    (["identity", "show", "aztp://Bad.Domain/workload/production/node/x"], 2, "trust domain"),
    (["identity", "show", "aztp://aztp.local/not-a-workload"], 2, ""),
    (["identity", "show", "https://example.org/x"], 2, "expected an AZTP ID"),
    (["identity", "show", "x"], 2, "name"),
    (["identity", "revoke", "ghost"], 3, "ghost"),
    (["identity", "reissue", "aztp://aztp.local/workload/production/node/ghost"], 3, "not found"),
    (["identity", "issue", "bad-name-"], 2, "name"),
    (["identity", "issue", "ok-name", "--trust-domain", "UPPER.example"], 2, "trust domain"),
    (["identity", "issue", "ok-name", "--parent", "ghost"], 3, "ghost"),
    (["identity", "list", "--bogus"], 2, "no such option"),
    (["identity", "bogus"], 2, "no such command"),
    (["bogus"], 2, "no such command"),
    (["identity", "show"], 2, "missing argument"),
    (["flow", "show", "nope"], 3, "no identity flow with name 'nope'"),
    (["flow", "show", "0123456789abcdef01234567"], 3, "with id"),
    (["flow", "add", "nope", "researcher"], 3, "nope"),
    (["flow", "add", "prod", "ghost"], 3, "ghost"),
    (["flow", "remove", "prod", "aztp://x"], 2, ""),
    (["flow", "revoke", "nope", "researcher"], 3, "nope"),
    (["flow", "reinstate", "prod", "ghost"], 3, "ghost"),
    (["flow", "health", "nope"], 3, "nope"),
    (["flow", "delete", "nope"], 3, "nope"),
    (["flow", "create", "x", "--metadata", "[1]"], 2, "JSON object"),
    (["flow", "create", "x", "--metadata", "{"], 2, "not valid JSON"),
    (["verify", "ghost"], 3, "ghost"),
    (["verify", "researcher", "--flow", "nope"], 3, "nope"),
    (["verify", "researcher", "--to", "ghost"], 3, "ghost"),
    (["link", "researcher", "ghost"], 3, "ghost"),
    (["unlink", "ghost", "researcher"], 3, "ghost"),
    (["policy", "show", "ghost"], 3, "ghost"),
    (["policy", "attach", "ghost", "policy:x"], 3, "ghost"),
    (["svid", "jwt", "ghost", "--audience", "a"], 3, "ghost"),
    (["audit", "tail", "-n", "many"], 2, "valid integer"),
    (["keys", "revoke"], 2, "missing argument"),
    (["--api-key", "aztp_not_a_real_key", "identity", "list"], 4, "api key"),
]


@pytest.mark.parametrize(
    ("args", "code", "contains"), BAD_INPUT, ids=[" ".join(a) for a, _, _ in BAD_INPUT]
)
def test_bad_input_is_one_line_and_a_meaningful_exit_code(
    run: Run, args: list[str], code: int, contains: str
) -> None:
    run("identity", "issue", "researcher")
    run("flow", "create", "prod")
    run.fails(*args, code=code, contains=contains)


def test_debug_shows_the_traceback(run: Run) -> None:
    result = run("--debug", "identity", "show", "ghost", code=3)
    assert "Traceback" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: no identity named 'ghost'")


def test_unexpected_errors_are_one_line(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    from aztp_agents.client import Aztp

    async def boom(self: Aztp) -> list[dict[str, Any]]:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(Aztp, "list_identities", boom)
    line = run.fails("identity", "list", code=1, contains="disk on fire second line")
    assert "--debug" in line


def test_unreachable_server_is_exit_code_5(run: Run) -> None:
    run.fails(
        "--url",
        f"http://127.0.0.1:{_free_port()}",
        "--api-key",
        "aztp_x",
        "identity",
        "list",
        code=5,
        contains="127.0.0.1",
    )


# ============================================================================ installed script, remote mode


def _script(
    *args: str, home: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AZTP_")}
    full_env.update(env or {})
    return subprocess.run(
        [str(SCRIPT), "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=full_env,
        check=False,
    )


@pytest.mark.skipif(
    not SCRIPT.exists(), reason="the aztp-agents script is not installed in this environment"
)
def test_installed_script(tmp_path: Path) -> None:
    home = tmp_path / "home"
    issued = _script("identity", "issue", "scripted", "--json", home=home)
    assert issued.returncode == 0, issued.stderr
    assert json.loads(issued.stdout)["aztpId"].endswith("/node/scripted")
    missing = _script("flow", "show", "nope", home=home)
    assert missing.returncode == 3
    assert missing.stderr.strip().splitlines() == [
        "error: no identity flow with name 'nope'; see 'aztp-agents flow list'"
    ]
    bad_flag = _script("identity", "list", "--nope", home=home)
    assert bad_flag.returncode == 2 and len(bad_flag.stderr.strip().splitlines()) == 1
    assert "Traceback" not in missing.stderr + bad_flag.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """A real ``aztp-agents serve`` process on a free port, and an API key for it."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    if not SCRIPT.exists():
        pytest.skip("the aztp-agents script is not installed in this environment")
    import httpx

    home = tmp_path / "server-home"
    created = _script("keys", "create", "--json", home=home)
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)["api_key"]
    port = _free_port()
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZTP_")}
    proc = subprocess.Popen(
        [str(SCRIPT), "--home", str(home), "serve", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        yield url, key, home
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        log.close()


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


def test_home_that_is_not_a_folder_is_exit_code_5(run: Run, tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    result = run.runner.invoke(app, ["--home", str(not_a_folder), "identity", "list"])
    assert result.exit_code == 5
    assert result.stderr.splitlines() == [
        f"error: cannot use {not_a_folder}: File exists (--home must be a folder you can write)"
    ]
