"""``aztp-agents org``, ``keys`` and ``user`` on the embedded store, and their refusal of a
server URL."""

from __future__ import annotations

import json

from tests.support.cli import Run


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


def test_keys_list_names_the_user(run: Run) -> None:
    run.json("org", "create", "acme", "--trust-domain", "acme.example", "--user", "alice")
    run.json("user", "create", "bob", "--org", "acme")
    bob = run.json("keys", "create", "--org", "acme", "--user", "bob")
    listed = run.json("keys", "list", "--org", "acme")
    assert {k["id"]: k["userName"] for k in listed}[bob["id"]] == "bob"
    assert sorted(k["userName"] for k in listed) == ["alice", "bob"]
    human = run("keys", "list", "--org", "acme").stdout
    assert "alice" in human and "bob" in human
    assert bob["api_key"] not in human


def test_org_list_and_user_list(run: Run) -> None:
    run.json("identity", "issue", "bot")  # makes the local organization
    run.json("org", "create", "acme", "--trust-domain", "acme.example", "--user", "alice")
    run.json("org", "add-trust-domain", "acme", "acme.test")
    run.json("user", "create", "bob", "--org", "acme")
    bob_key = run.json("keys", "create", "--org", "acme", "--user", "bob")

    orgs = {o["name"]: o for o in run.json("org", "list")}
    assert sorted(orgs) == ["acme", "local"]
    assert orgs["acme"]["trustDomains"] == ["acme.example", "acme.test"]
    assert orgs["acme"]["users"] == 2
    assert "acme.example" in run("org", "list").stdout

    users = {u["name"]: u for u in run.json("user", "list", "--org", "acme")}
    assert sorted(users) == ["alice", "bob"]
    assert users["alice"]["activeKeys"] == 1 and users["bob"]["activeKeys"] == 1
    run("keys", "revoke", bob_key["id"], "--org", "acme")
    assert {u["name"]: u["activeKeys"] for u in run.json("user", "list", "--org", "acme")} == {
        "alice": 1,
        "bob": 0,
    }
    assert "alice" in run("user", "list", "--org", "acme").stdout
    run.fails("user", "list", "--org", "nope", code=3, contains="no organization")
