"""The HTTP server as a real process: envelope and status codes, authentication, malformed
input, organization isolation, the change feed, and that no private key ever crosses the wire.

Every test talks to ``python -m aztp_agents.server`` on a free loopback port (one process per
module); at the end its log must hold no traceback (no 5xx, no unhandled error).
"""

from __future__ import annotations

import concurrent.futures
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from aztp_agents.authority import Authority
from aztp_agents.credentials import generate_private_key, make_csr
from aztp_agents.server.testing import LiveServer, live_server, make_org
from aztp_agents.store import Store

ACME_TD = "acme.example"
GLOBEX_TD = "globex.example"


def aid(name: str, td: str = ACME_TD) -> str:
    return f"aztp://{td}/workload/production/node/{name}"


class Api:
    """A tiny client: every answer must be the envelope; returns (status, body)."""

    def __init__(self, url: str, key: str | None) -> None:
        headers = {"api_access_key": key} if key else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=10)

    def call(self, method: str, path: str, **kw: Any) -> tuple[int, dict[str, Any]]:
        r = self.http.request(method, path, **kw)
        body = r.json()
        assert set(body) == {"success", "message", "data"}, body
        assert isinstance(body["message"], str) and body["message"]
        assert body["success"] is (r.status_code < 400)
        assert r.status_code < 500, body
        return r.status_code, body

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        status, body = self.call(method, path, **kw)
        assert status == 200, body
        return body["data"]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("server-home")
    _, acme_key = make_org(home, "acme", ACME_TD)
    _, globex_key = make_org(home, "globex", GLOBEX_TD)
    with live_server(home) as srv:
        yield srv, home, Api(srv.url, acme_key), Api(srv.url, globex_key)
    log = srv.log()
    assert "Traceback" not in log and "internal error" not in log, log


@pytest.fixture(scope="module")
def srv(env) -> LiveServer:
    return env[0]


@pytest.fixture(scope="module")
def acme(env) -> Api:
    return env[2]


@pytest.fixture(scope="module")
def globex(env) -> Api:
    return env[3]


def state(api: Api) -> dict[str, Any]:
    return api.ok("GET", "/v1/state")


# ============================================================================ basics


def test_health_needs_no_key(srv: LiveServer) -> None:
    anon = Api(srv.url, None)
    assert anon.ok("GET", "/v1/health")["status"] == "healthy"
    assert anon.ok("GET", "/identity-flow/health")["status"] == "healthy"


def test_openapi_lists_every_wire_route_and_no_422(srv: LiveServer) -> None:
    doc = httpx.get(f"{srv.url}/openapi.json").json()
    wire = {
        ("post", "/aztp/issue-identity"),
        ("post", "/aztp/verify-identity"),
        ("post", "/aztp/authorize-connection-with-identities"),
        ("get", "/aztp/get-identity"),
        ("get", "/aztp/discover-with-trust-domain"),
        ("get", "/aztp/discoverable"),
        ("get", "/aztp/get-identity-access-policy"),
        ("get", "/aztp/get-identity-action-permissions"),
        ("post", "/aztp/revoke-identity"),
        ("post", "/aztp/reissue-revoked-identity"),
        ("post", "/aztp/create-workload-identity-link"),
        ("get", "/identity-flow/health"),
        ("post", "/identity-flow/create"),
        ("put", "/identity-flow/update/{flow_id}"),
        ("delete", "/identity-flow/delete/{flow_id}"),
        ("post", "/identity-flow/add-identity-to-flow"),
        ("post", "/identity-flow/remove-identity-from-flow"),
        ("post", "/aztp/revoke-identity-for-flow"),
        ("post", "/oiap/evaluate"),
        ("get", "/v1/state"),
        ("get", "/v1/state/changes"),
        ("post", "/v1/identities"),
        ("post", "/v1/svid/jwt"),
        ("get", "/.well-known/spiffe-bundle"),
        ("post", "/v1/decisions"),
        ("post", "/v1/decisions/audit"),
        ("get", "/v1/audit"),
    }
    have = {(m, p) for p, item in doc["paths"].items() for m in item}
    assert wire <= have, wire - have
    assert "422" not in json.dumps(doc["paths"])
    schemes = doc["components"]["securitySchemes"]
    assert schemes["apiAccessKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "api_access_key",
        "description": schemes["apiAccessKey"]["description"],
    }


def test_identity_lifecycle_envelopes_and_status_codes(acme: Api) -> None:
    issued = acme.ok(
        "POST", "/aztp/issue-identity", json={"workloadId": "env-agent", "isGlobalIdentity": False}
    )
    assert issued["aztpId"] == aid("env-agent") and issued["valid"] is True
    assert issued["workloadInfo"]["workloadId"] == "env-agent"
    # re-connect is idempotent: same ID
    assert acme.ok("POST", "/aztp/issue-identity", json={"workloadId": "env-agent"})[
        "aztpId"
    ] == aid("env-agent")
    # negative verification: 200 with data.valid = false
    status, body = acme.call("POST", "/aztp/verify-identity", json={"aztpId": aid("nobody")})
    assert (
        status == 200
        and body["data"]["valid"] is False
        and body["data"]["reason"] == "identity_unknown"
    )
    assert (
        acme.ok("POST", "/aztp/verify-identity", json={"aztpId": aid("env-agent")})["valid"] is True
    )
    status, body = acme.call(
        "POST",
        "/aztp/verify-identity",
        json={"aztpId": aid("env-agent"), "identityFlowId": "0" * 24},
    )
    assert status == 200 and body["data"]["valid"] is False
    # get-identity with and without the trailing slash, by name or ID
    for path in ("/aztp/get-identity/", "/aztp/get-identity"):
        data = acme.ok("GET", path, params={"agentName": "env-agent"})
        assert data["aztpId"] == data["data"]["aztpId"] == aid("env-agent")
    assert (
        acme.ok("GET", "/aztp/get-identity", params={"aztpId": aid("env-agent")})["name"]
        == "env-agent"
    )
    assert acme.ok("GET", f"/v1/identities/{aid('env-agent')}")["name"] == "env-agent"
    assert acme.ok("GET", "/v1/identities/by-name/env-agent")["aztpId"] == aid("env-agent")
    status, body = acme.call("GET", "/aztp/get-identity/", params={"agentName": "missing"})
    assert status == 404 and body["data"]["code"] == "not_found"
    status, body = acme.call("GET", "/aztp/get-identity/")
    assert status == 400
    # revoke: 200 then 409
    assert (
        acme.ok("POST", "/aztp/revoke-identity", json={"aztpId": aid("env-agent"), "reason": "t"})[
            "status"
        ]
        == "revoked"
    )
    status, body = acme.call("POST", "/aztp/revoke-identity", json={"aztpId": aid("env-agent")})
    assert status == 409 and body["data"]["code"] == "already_revoked"
    assert (
        acme.ok("POST", "/aztp/verify-identity", json={"aztpId": aid("env-agent")})["valid"]
        is False
    )
    # issue of a revoked identity: 200, data.valid false, data.error
    data = acme.ok("POST", "/aztp/issue-identity", json={"workloadId": "env-agent"})
    assert data["valid"] is False and "revoked" in data["error"]
    reissued = acme.ok("POST", "/aztp/reissue-revoked-identity", json={"aztpId": aid("env-agent")})
    assert reissued["valid"] is True and "privateKey" not in reissued
    assert (
        acme.ok("POST", "/aztp/verify-identity", json={"aztpId": aid("env-agent")})["valid"] is True
    )


def test_unknown_route_and_wrong_method_use_the_envelope(acme: Api) -> None:
    status, body = acme.call("GET", "/aztp/no-such-thing")
    assert status == 404 and body["data"]["code"] == "not_found"
    status, body = acme.call("DELETE", "/aztp/verify-identity")
    assert status == 405 and body["data"]["code"] == "method_not_allowed"


def test_flows_links_policies_and_state(acme: Api) -> None:
    for name in ("st-agent", "st-tool"):
        acme.ok("POST", "/aztp/issue-identity", json={"workloadId": name})
    flow = acme.ok(
        "POST",
        "/identity-flow/create",
        json={
            "name": "st-flow",
            "discoverable": "private",
            "tags": ["a"],
            "metadata": {"k": {"n": 1}},
        },
    )
    fid = flow["_id"]
    status, _body = acme.call("POST", "/identity-flow/create", json={"name": "st-flow"})
    assert status == 409
    for name in ("st-agent", "st-tool"):
        acme.ok(
            "POST",
            "/identity-flow/add-identity-to-flow",
            json={"identityFlowId": fid, "identity": {"aztpId": aid(name)}},
        )
    acme.ok(
        "POST",
        "/aztp/create-workload-identity-link",
        json={
            "sourceIdentity": aid("st-agent"),
            "targetIdentity": aid("st-tool"),
            "relationshipType": "data_pipeline",
        },
    )
    pol = acme.ok(
        "POST",
        "/v1/policies",
        json={
            "name": "no-delete",
            "document": {
                "Statement": [
                    {"Effect": "Allow", "Action": "tool:*"},
                    {"Effect": "Deny", "Action": "tool:delete"},
                ]
            },
        },
    )
    acme.ok("POST", "/v1/policies/attach", json={"aztpId": aid("st-agent"), "code": pol["code"]})
    st = state(acme)
    assert st["flows"][fid] == "st-flow"
    assert sorted(st["members"][fid]) == [aid("st-agent"), aid("st-tool")]
    assert [aid("st-agent"), aid("st-tool")] in st["links"]
    assert st["policies"][aid("st-agent")] == [
        {"Effect": "Allow", "Action": ["tool:*"]},
        {"Effect": "Deny", "Action": ["tool:delete"]},
    ]
    assert st["flowLinks"] == {}  # links made through the API are organization-wide
    assert st["identities"][aid("st-agent")] == "active"
    # decisions, taken by the server and audited
    d = acme.ok(
        "POST",
        "/v1/decisions",
        json={
            "flowId": fid,
            "agent": aid("st-agent"),
            "tool": aid("st-tool"),
            "toolName": "search",
        },
    )
    assert d["allowed"] is True and d["reason"] == "allowed" and d["revision"] == st["revision"]
    d = acme.ok(
        "POST",
        "/v1/decisions",
        json={
            "flowId": fid,
            "agent": aid("st-agent"),
            "tool": aid("st-tool"),
            "toolName": "delete",
        },
    )
    assert d["allowed"] is False and d["reason"] == "policy_denied"
    # flow revocation / reinstate
    acme.ok(
        "POST",
        "/aztp/revoke-identity-for-flow",
        json={"aztpId": aid("st-tool"), "identityFlowId": fid, "reason": "x"},
    )
    assert aid("st-tool") in state(acme)["flowRevoked"][fid]
    health = acme.ok("GET", f"/v1/flows/{fid}/health")
    assert health["status"] == "critical" and health["valid"] == 1
    acme.ok("POST", "/v1/flows/reinstate", json={"aztpId": aid("st-tool"), "identityFlowId": fid})
    assert state(acme)["flowRevoked"][fid] == []
    # remote enforcement points' decisions are recorded
    rec = {**d, "context": {"crew": "c1"}}
    assert acme.ok("POST", "/v1/decisions/audit", json={"decisions": [rec]}) == {"recorded": 1}
    entries = acme.ok("GET", "/v1/audit", params={"action": "decision.*"})
    assert any(e["data"].get("context") == {"crew": "c1"} for e in entries)
    assert acme.ok("GET", "/v1/audit/verify")["ok"] is True
    # update + delete
    assert (
        acme.ok("PUT", f"/identity-flow/update/{fid}", json={"description": "d2"})["description"]
        == "d2"
    )
    acme.ok("DELETE", f"/identity-flow/delete/{fid}")
    assert fid not in state(acme)["flows"]
    status, _ = acme.call("GET", f"/v1/flows/{fid}")
    assert status == 404


def test_no_private_key_crosses_the_wire(acme: Api) -> None:
    ans = acme.ok("POST", "/v1/identities", json={"name": "keyless"})
    assert (
        "privateKey" not in ans
        and ans["certificate"] == ""
        and ans["identity"]["aztpId"] == aid("keyless")
    )
    key = generate_private_key()
    spiffe = f"spiffe://{ACME_TD}/workload/production/node/csr-agent"
    ans = acme.ok(
        "POST", "/v1/identities", json={"name": "csr-agent", "csr": make_csr(key, spiffe)}
    )
    assert "privateKey" not in ans and ans["certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert (
        acme.ok("POST", "/v1/credentials/verify", json={"certificate": ans["certificate"]})["valid"]
        is True
    )
    cred = acme.ok(
        "POST",
        "/v1/identities/credential",
        json={"aztpId": aid("csr-agent"), "csr": make_csr(key, spiffe)},
    )
    assert "privateKey" not in cred and cred["certificate"].startswith(
        "-----BEGIN CERTIFICATE-----"
    )
    status, _body = acme.call(
        "POST", "/v1/identities/credential", json={"aztpId": aid("csr-agent")}
    )
    assert status == 400  # a CSR is required: the server never makes keys for callers
    status, _body = acme.call(
        "POST", "/v1/identities/credential", json={"aztpId": aid("csr-agent"), "csr": "junk"}
    )
    assert status == 400
    jwt = acme.ok("POST", "/v1/svid/jwt", json={"aztpId": aid("csr-agent"), "audience": "svc"})
    assert jwt["token"].count(".") == 2
    bundle = acme.ok("GET", "/.well-known/spiffe-bundle")
    assert list(bundle) == [ACME_TD] and bundle[ACME_TD]["keys"]


# ============================================================================ authentication


def test_missing_or_bad_key_is_401(srv: LiveServer) -> None:
    body = {"aztpId": aid("xx")}
    for headers in (
        {},
        {"api_access_key": "aztp_wrong"},
        {"Authorization": "Bearer aztp_wrong"},
        {"api_access_key": "x" * 5000},
        {"Authorization": "Basic Zm9vOmJhcg=="},
    ):
        r = httpx.post(f"{srv.url}/aztp/verify-identity", json=body, headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["success"] is False and r.json()["data"]["code"] == "unauthenticated"
    r = httpx.get(f"{srv.url}/v1/state/changes")
    assert r.status_code == 401


def test_bearer_works_like_the_header(env) -> None:
    srv, _home, acme, _ = env
    key = acme.http.headers["api_access_key"]
    r = httpx.post(
        f"{srv.url}/aztp/verify-identity",
        json={"aztpId": aid("xx")},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 200


def test_key_made_after_start_works_at_once_and_revocation_is_prompt(env) -> None:
    srv, home, _, _ = env
    principal, key = make_org(home, "latecomer", "late.example")
    late = Api(srv.url, key)
    assert late.ok("POST", "/aztp/issue-identity", json={"workloadId": "late"})["aztpId"] == aid(
        "late", "late.example"
    )
    # a second key of the same user, then revoked from another process (the CLI would do this)
    store = Store.open_sqlite(home / "aztp.db")
    try:
        authority = Authority(store)
        key_id, key2 = authority.create_api_key(principal.org_id, principal.user_id)
        second = Api(srv.url, key2)
        for _ in range(3):  # warm the server's key cache
            assert second.ok("GET", "/v1/identities")[0]["name"] == "late"
        authority.revoke_api_key(principal.org_id, key_id)
        revoked_at = time.monotonic()
    finally:
        store.close()
    while True:
        r = second.http.get("/v1/identities")
        if r.status_code == 401:
            break
        assert time.monotonic() - revoked_at < 0.5, "revoked key still accepted after 500 ms"
        time.sleep(0.002)
    assert late.ok("GET", "/v1/identities")  # the first key is unaffected


# ============================================================================ malformed input


def _raw(
    srv: LiveServer,
    key: str,
    path: str,
    content: bytes,
    content_type: str = "application/json",
    method: str = "POST",
) -> httpx.Response:
    return httpx.request(
        method,
        f"{srv.url}{path}",
        content=content,
        headers={"api_access_key": key, "content-type": content_type},
        timeout=30,
    )


MALFORMED: list[tuple[str, bytes]] = [
    ("/aztp/issue-identity", b"{not json"),
    ("/aztp/issue-identity", b""),
    ("/aztp/issue-identity", b"[]"),
    ("/aztp/issue-identity", b"null"),
    ("/aztp/issue-identity", b'"workloadId"'),
    ("/aztp/issue-identity", b'{"workloadId": 123}'),
    ("/aztp/issue-identity", b'{"workloadId": "ok-name", "isGlobalIdentity": "true"}'),
    ("/aztp/issue-identity", b'{"workloadId": "bad name!"}'),
    ("/aztp/issue-identity", b'{"workloadId": "x"}'),
    (
        "/aztp/issue-identity",
        b'{"workloadId": "ok-name", "metadata": {"trustDomain": "UPPER.example"}}',
    ),
    (
        "/aztp/issue-identity",
        b'{"workloadId": "ok-name", "metadata": {"trustDomain": "globex.example"}}',
    ),
    (
        "/aztp/issue-identity",
        b'{"workloadId": "ok-name", "metadata": {"parentIdentity": "aztp://acme.example/nope"}}',
    ),
    ("/aztp/issue-identity", b'{"workloadId": "ok-name", "metadata": "x"}'),
    ("/aztp/issue-identity", b'{"workloadId": "ok-name", "method": "a/b"}'),
    ("/aztp/issue-identity", b"\xff\xfe\x00garbage"),
    ("/aztp/issue-identity", b'{"workloadId": "' + b"a" * 300 + b'"}'),
    ("/aztp/issue-identity", b"[" * 50_000 + b"]" * 50_000),
    ("/aztp/verify-identity", b'{"aztpId": "spiffe://acme.example/workload/production/node/a"}'),
    ("/aztp/verify-identity", b'{"aztpId": "aztp://acme.example/workload/production/node/a\\n"}'),
    (
        "/aztp/verify-identity",
        b'{"aztpId": "aztp://acme.example/workload/production/node/a", "identityFlowId": 5}',
    ),
    ("/aztp/verify-identity", b'{"aztpId": ["aztp://acme.example/workload/production/node/a"]}'),
    ("/aztp/revoke-identity", b'{"aztpId": "aztp://acme.example/../../etc/passwd"}'),
    (
        "/aztp/create-workload-identity-link",
        b'{"sourceIdentity": "aztp://a", "targetIdentity": "aztp://b"}',
    ),
    (
        "/aztp/create-workload-identity-link",
        b'{"sourceIdentity": "aztp://acme.example/workload/production/node/p1", '
        b'"targetIdentity": "aztp://acme.example/workload/production/node/p1", "relationshipType": "DROP TABLE"}',
    ),
    ("/identity-flow/create", b'{"name": "f", "discoverable": "world"}'),
    ("/identity-flow/create", b'{"name": "f", "tags": "a,b"}'),
    ("/identity-flow/create", b'{"name": "f", "metadata": [1, 2]}'),
    ("/identity-flow/create", b'{"name": ""}'),
    (
        "/identity-flow/add-identity-to-flow",
        b'{"identityFlowId": "nope", "identity": {"aztpId": 7}}',
    ),
    ("/identity-flow/add-identity-to-flow", b'{"identityFlowId": "nope"}'),
    (
        "/v1/policies",
        b'{"name": "p", "document": {"Statement": [{"Effect": "Maybe", "Action": "x"}]}}',
    ),
    ("/v1/policies", b'{"name": "p", "document": {"Statement": []}, "code": "nocolon-code"}'),
    ("/v1/decisions/audit", b'{"decisions": [{"allowed": true, "reason": "because"}]}'),
    ("/v1/decisions", b'{"flowId": "f", "agent": "a", "tool": "t", "enforce": "yes"}'),
    (
        "/v1/svid/jwt",
        b'{"aztpId": "aztp://acme.example/workload/production/node/p1", "audience": []}',
    ),
    ("/v1/federation", b'{"trustDomain": "acme.example"}'),
    ("/oiap/evaluate", b'{"aztp_id": "aztp://acme.example/workload/production/node/p1"}'),
]


def test_malformed_input_is_4xx_and_changes_nothing(env) -> None:
    srv, _, acme, _ = env
    key = acme.http.headers["api_access_key"]
    before = state(acme)
    identities_before = acme.ok("GET", "/v1/identities")
    for path, content in MALFORMED:
        r = _raw(srv, key, path, content)
        assert 400 <= r.status_code < 500, (path, content[:80], r.status_code, r.text[:300])
        body = r.json()
        assert body["success"] is False and body["data"]["code"], body
    # not JSON at all
    r = _raw(srv, key, "/aztp/verify-identity", b"aztpId=x", "application/x-www-form-urlencoded")
    assert r.status_code == 400
    r = _raw(srv, key, "/aztp/verify-identity", b"<xml/>", "text/xml")
    assert r.status_code == 400
    # bad path and query values
    for method, path in (
        ("GET", "/v1/flows/" + "f" * 500),
        ("DELETE", "/identity-flow/delete/%00"),
        ("GET", "/v1/identities/not-an-id"),
        ("GET", "/v1/audit?limit=-1"),
        ("GET", "/v1/audit?limit=abc"),
        ("GET", "/v1/audit?action=a&action=b"),
        ("GET", "/aztp/discover-with-trust-domain?trustDomain=BAD..TD"),
        ("GET", "/aztp/get-identity-access-policy"),
        ("GET", "/.well-known/spiffe-bundle?trustDomain=globex.example"),
    ):
        r = httpx.request(method, f"{srv.url}{path}", headers={"api_access_key": key})
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:200])
        assert r.json()["success"] is False
    after = state(acme)
    assert after == before
    assert acme.ok("GET", "/v1/identities") == identities_before


def test_huge_bodies_are_413(env) -> None:
    srv, _, acme, _ = env
    key = acme.http.headers["api_access_key"]
    before = state(acme)
    big = json.dumps({"name": "huge-flow", "metadata": {"blob": "x" * (2 * 1024 * 1024)}}).encode()
    r = _raw(srv, key, "/identity-flow/create", big)
    assert r.status_code == 413 and r.json()["data"]["code"] == "body_too_large"

    def chunks():  # chunked transfer: no Content-Length, the server counts while reading
        yield b'{"name": "huge-flow-2", "metadata": {"blob": "'
        for _ in range(40):
            yield b"y" * 65536
        yield b'"}}'

    r = httpx.post(
        f"{srv.url}/identity-flow/create",
        content=chunks(),
        headers={"api_access_key": key, "content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 413
    assert state(acme) == before
    names = {f["name"] for f in acme.ok("GET", "/v1/flows")}
    assert not names & {"huge-flow", "huge-flow-2"}


# ============================================================================ isolation


def test_organizations_never_see_each_other(acme: Api, globex: Api) -> None:
    a_doc = acme.ok(
        "POST",
        "/aztp/issue-identity",
        json={"workloadId": "secret-agent", "isGlobalIdentity": True},
    )
    a_id, a_secrets = a_doc["aztpId"], (a_doc["_id"], a_doc["userId"])  # values globex cannot know
    a_flow = acme.ok(
        "POST", "/identity-flow/create", json={"name": "acme-public", "discoverable": "public"}
    )["_id"]
    acme.ok(
        "POST",
        "/identity-flow/add-identity-to-flow",
        json={"identityFlowId": a_flow, "identity": {"aztpId": a_id}},
    )
    g_id = globex.ok("POST", "/aztp/issue-identity", json={"workloadId": "secret-agent"})["aztpId"]
    assert g_id == aid("secret-agent", GLOBEX_TD) != a_id
    g_flow = globex.ok("POST", "/identity-flow/create", json={"name": "acme-public"})[
        "_id"
    ]  # same name, other org

    # globex sees nothing of acme's
    assert a_id not in {d["aztpId"] for d in globex.ok("GET", "/v1/identities")}
    assert a_id not in {
        d["aztpId"] for d in globex.ok("GET", "/aztp/discoverable", params={"discoverable": "true"})
    }
    assert a_flow not in {f["_id"] for f in globex.ok("GET", "/v1/flows")}
    st = state(globex)
    assert a_id not in st["identities"] and a_flow not in st["flows"] and a_id not in json.dumps(st)
    for listing in (
        st,
        globex.ok("GET", "/v1/identities"),
        globex.ok("GET", "/v1/flows"),
        globex.ok("GET", "/v1/links"),
    ):
        assert not any(s in json.dumps(listing) for s in a_secrets)
    assert globex.ok("POST", "/aztp/verify-identity", json={"aztpId": a_id})["valid"] is False
    assert (
        globex.ok("POST", "/aztp/verify-identity", json={"aztpId": g_id, "identityFlowId": a_flow})[
            "valid"
        ]
        is False
    )
    for method, path, kw in (
        ("GET", f"/v1/identities/{a_id}", {}),
        ("GET", "/aztp/get-identity/", {"params": {"aztpId": a_id}}),
        ("GET", f"/v1/flows/{a_flow}", {}),
        ("GET", "/aztp/get-identity-access-policy", {"params": {"aztpId": a_id}}),
        ("POST", "/aztp/revoke-identity", {"json": {"aztpId": a_id}}),
        ("POST", "/aztp/reissue-revoked-identity", {"json": {"aztpId": a_id}}),
        ("POST", "/v1/svid/jwt", {"json": {"aztpId": a_id, "audience": "x"}}),
        (
            "POST",
            "/identity-flow/add-identity-to-flow",
            {"json": {"identityFlowId": a_flow, "identity": {"aztpId": g_id}}},
        ),
        (
            "POST",
            "/identity-flow/add-identity-to-flow",
            {"json": {"identityFlowId": g_flow, "identity": {"aztpId": a_id}}},
        ),
        (
            "POST",
            "/aztp/revoke-identity-for-flow",
            {"json": {"aztpId": a_id, "identityFlowId": a_flow, "reason": "x"}},
        ),
        ("PUT", f"/identity-flow/update/{a_flow}", {"json": {"name": "stolen"}}),
        ("DELETE", f"/identity-flow/delete/{a_flow}", {}),
        (
            "POST",
            "/aztp/create-workload-identity-link",
            {"json": {"sourceIdentity": g_id, "targetIdentity": a_id}},
        ),
        (
            "POST",
            "/aztp/create-workload-identity-link",
            {"json": {"sourceIdentity": a_id, "targetIdentity": g_id}},
        ),
        ("GET", "/.well-known/spiffe-bundle", {"params": {"trustDomain": ACME_TD}}),
    ):
        status, body = globex.call(method, path, **kw)
        assert status in (403, 404), (method, path, status, body)
        assert (
            a_id not in body["message"] or status == 404
        )  # says only "not found in this organization"
    status, body = globex.call(
        "POST",
        "/aztp/issue-identity",
        json={"workloadId": "squatter", "metadata": {"trustDomain": ACME_TD}},
    )
    assert status == 403
    assert (
        globex.ok(
            "POST",
            "/aztp/authorize-connection-with-identities",
            json={"aztpId": g_id, "requestAztpId": a_id},
        )["valid"]
        is False
    )
    # globex's audit records what globex asked (even about acme's IDs), never acme's doings
    g_audit = globex.ok("GET", "/v1/audit")
    assert g_audit and not [e for e in g_audit if any(s in json.dumps(e) for s in a_secrets)]
    assert {e["org_id"] for e in g_audit} == {g_audit[0]["org_id"]}
    # acme's identity and flow are untouched
    assert (
        acme.ok("POST", "/aztp/verify-identity", json={"aztpId": a_id, "identityFlowId": a_flow})[
            "valid"
        ]
        is True
    )
    assert acme.ok("GET", f"/v1/flows/{a_flow}")["name"] == "acme-public"


# ============================================================================ change feed


def test_change_feed_emits_a_new_revision_after_a_write(env) -> None:
    srv, _, acme, globex = env
    key = acme.http.headers["api_access_key"]
    events: list[tuple[str, int, float]] = []
    first = threading.Event()
    stop = threading.Event()

    def listen() -> None:
        with (
            httpx.Client(timeout=httpx.Timeout(10, read=5)) as c,
            c.stream("GET", f"{srv.url}/v1/state/changes", headers={"api_access_key": key}) as r,
        ):
            assert r.status_code == 200 and r.headers["content-type"].startswith(
                "text/event-stream"
            )
            name = None
            for line in r.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: ") and name:
                    events.append((name, json.loads(line[6:])["revision"], time.monotonic()))
                    first.set()
                if stop.is_set():
                    return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert first.wait(5)
    # a follower with no position is told to load the whole state first, then the revision
    assert events[0][0] == "reset"
    deadline = time.monotonic() + 3
    while len(events) < 2:
        assert time.monotonic() < deadline, events
        time.sleep(0.005)
    start_rev = events[1][1]
    assert events[1][0] == "revision" and start_rev == state(acme)["revision"]
    time.sleep(1.3)  # a heartbeat arrives when nothing changes
    assert any(e[0] == "heartbeat" and e[1] == start_rev for e in events)
    wrote = time.monotonic()
    globex.ok("POST", "/aztp/issue-identity", json={"workloadId": "feed-trigger"})
    deadline = time.monotonic() + 3
    while not any(e[0] == "revision" and e[1] > start_rev for e in events):
        assert time.monotonic() < deadline, events
        time.sleep(0.005)
    seen = next(e for e in events if e[0] == "revision" and e[1] > start_rev)
    assert seen[2] - wrote < 1.0
    assert state(acme)["revision"] >= seen[1]
    stop.set()


# ============================================================================ concurrency


def test_concurrent_reads_and_writes_give_no_5xx(env) -> None:
    srv, _, acme, _ = env
    key = acme.http.headers["api_access_key"]
    acme.ok("POST", "/aztp/issue-identity", json={"workloadId": "busy"})

    def work(i: int) -> int:
        with httpx.Client(base_url=srv.url, headers={"api_access_key": key}, timeout=30) as c:
            codes = []
            for j in range(10):
                if j % 3 == 0:
                    codes.append(
                        c.post(
                            "/aztp/issue-identity", json={"workloadId": f"busy-{i}-{j}"}
                        ).status_code
                    )
                else:
                    codes.append(
                        c.post("/aztp/verify-identity", json={"aztpId": aid("busy")}).status_code
                    )
            return max(codes)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert set(pool.map(work, range(16))) <= {200, 429}


def test_tls(tmp_path: Path) -> None:
    """With --tls-cert/--tls-key the server speaks HTTPS."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = generate_private_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]
            ),
            False,
        )
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    _, api_key = make_org(tmp_path / "home", "tls-org", "tls.example")
    with live_server(
        tmp_path / "home",
        args=["--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem")],
    ) as srv:
        assert srv.url.startswith("https://")
        r = httpx.get(
            f"{srv.url}/v1/identities",
            headers={"api_access_key": api_key},
            verify=str(tmp_path / "cert.pem"),
        )
        assert r.status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{srv.url}/v1/health")  # verification on: self-signed is refused


# ============================================================================ verify fast path


def test_verify_answers_are_the_authoritys(env) -> None:
    """The hot verify path (answered from memory) says exactly what the authority says, for
    every reason, globally and in flows, including another user's private flow."""
    srv, home, acme, _ = env
    for name in ("fp-valid", "fp-revoked", "fp-outsider", "fp-flow-revoked"):
        acme.ok("POST", "/aztp/issue-identity", json={"workloadId": name})
    acme.ok("POST", "/aztp/revoke-identity", json={"aztpId": aid("fp-revoked"), "reason": "r"})
    flow = acme.ok(
        "POST", "/identity-flow/create", json={"name": "fp-flow", "discoverable": "public"}
    )["_id"]
    private = acme.ok(
        "POST", "/identity-flow/create", json={"name": "fp-private", "discoverable": "private"}
    )["_id"]
    for name in ("fp-valid", "fp-revoked", "fp-flow-revoked"):
        for f in (flow, private):
            acme.ok(
                "POST",
                "/identity-flow/add-identity-to-flow",
                json={"identityFlowId": f, "aztpId": aid(name)},
            )
    acme.ok(
        "POST",
        "/aztp/revoke-identity-for-flow",
        json={"aztpId": aid("fp-flow-revoked"), "identityFlowId": flow},
    )
    store = Store.open_sqlite(home / "aztp.db")
    try:
        authority = Authority(store)
        admin = authority.authenticate(acme.http.headers["api_access_key"])
        colleague = authority.create_user(
            admin.org_id, "colleague"
        )  # does not see admin's private flow
        _, colleague_key = authority.create_api_key(admin.org_id, colleague.user_id)
        for principal, api in ((admin, acme), (colleague, Api(srv.url, colleague_key))):
            for name in ("fp-valid", "fp-revoked", "fp-outsider", "fp-flow-revoked", "fp-unknown"):
                for flow_id in (None, flow, private, "f" * 24):
                    body = (
                        {"aztpId": aid(name)}
                        if flow_id is None
                        else {"aztpId": aid(name), "identityFlowId": flow_id}
                    )
                    expected = authority.verify_identity(principal, aid(name), flow_id)
                    for _ in range(3):  # first through the authority, then from memory
                        status, answer = api.call("POST", "/aztp/verify-identity", json=body)
                        assert status == 200
                        assert answer["data"] == expected, (principal.user_name, name, flow_id)
                        assert answer["message"] == expected["message"]
    finally:
        store.close()


def test_every_verification_is_audited(acme: Api) -> None:
    """Answered from memory or by the authority, each verification leaves one audit record."""
    acme.ok("POST", "/aztp/issue-identity", json={"workloadId": "audited"})
    before = len(acme.ok("GET", "/v1/audit", params={"action": "identity.verify"}))
    for _ in range(25):
        acme.ok("POST", "/aztp/verify-identity", json={"aztpId": aid("audited")})
    acme.ok("POST", "/aztp/verify-identity", json={"aztpId": aid("never-issued")})
    entries = acme.ok("GET", "/v1/audit", params={"action": "identity.verify"})
    new = entries[before:]
    assert len(new) == 26
    assert [e["subject"] for e in new] == [aid("audited")] * 25 + [aid("never-issued")]
    assert new[0]["data"] == {"valid": True, "reason": "allowed", "flowId": None}
    assert new[-1]["data"] == {"valid": False, "reason": "identity_unknown", "flowId": None}
    assert acme.ok("GET", "/v1/audit/verify")["ok"] is True


def test_a_revocation_acknowledged_here_is_honoured_by_the_next_verify(acme: Api) -> None:
    for i in range(30):
        name = f"ack-{i}"
        acme.ok("POST", "/aztp/issue-identity", json={"workloadId": name})
        for _ in range(3):
            assert (
                acme.ok("POST", "/aztp/verify-identity", json={"aztpId": aid(name)})["valid"]
                is True
            )
        acme.ok("POST", "/aztp/revoke-identity", json={"aztpId": aid(name)})
        assert (
            acme.ok("POST", "/aztp/verify-identity", json={"aztpId": aid(name)})["valid"] is False
        ), i
        acme.ok("POST", "/aztp/reissue-revoked-identity", json={"aztpId": aid(name)})
        assert (
            acme.ok("POST", "/aztp/verify-identity", json={"aztpId": aid(name)})["valid"] is True
        ), i


def test_a_revocation_by_another_process_is_seen_within_the_poll_bound(env) -> None:
    _srv, home, acme, _ = env
    acme.ok("POST", "/aztp/issue-identity", json={"workloadId": "other-proc"})
    for _ in range(3):
        assert (
            acme.ok("POST", "/aztp/verify-identity", json={"aztpId": aid("other-proc")})["valid"]
            is True
        )
    store = Store.open_sqlite(home / "aztp.db")
    try:
        authority = Authority(store)
        principal = authority.authenticate(acme.http.headers["api_access_key"])
        authority.revoke_identity(principal, aid("other-proc"), "from the CLI")
        revoked = time.monotonic()
    finally:
        store.close()
    while acme.ok("POST", "/aztp/verify-identity", json={"aztpId": aid("other-proc")})["valid"]:
        assert time.monotonic() - revoked < 0.25, (
            "another process's revocation not seen within 250 ms"
        )


def test_audit_read_reports_a_damaged_row_instead_of_failing(tmp_path: Path) -> None:
    """One row changed outside aztp-agents: the log is still readable, the damaged entry says
    so (as the verify route does), and every other entry is intact."""
    home = tmp_path / "home"
    _, key = make_org(home, "acme", ACME_TD)
    with live_server(home) as srv:
        api = Api(srv.url, key)
        for name in ("a1", "a2", "a3"):
            api.ok("POST", "/aztp/issue-identity", json={"workloadId": name})
        entries = api.ok("GET", "/v1/audit")
        damaged = entries[1]["seq"]
        con = sqlite3.connect(home / "aztp.db")
        with con:
            con.execute("UPDATE audit SET data = '{not json' WHERE seq = ?", (damaged,))
        con.close()
        status, body = api.call("GET", "/v1/audit")
        assert status == 200, body
        after = body["data"]
        assert len(after) == len(entries)
        bad = [e for e in after if e.get("problem")]
        assert [e["seq"] for e in bad] == [damaged]
        assert "audit verify" in bad[0]["problem"] and bad[0]["data"] == {}
        assert all("problem" not in e for e in after if e["seq"] != damaged)
        report = api.ok("GET", "/v1/audit/verify")
        assert report["ok"] is False and report["seq"] == damaged
