"""Multi-tenant hosting (issue 7): organizations never mix, through one real server process.

One ``python -m aztp_agents.server`` process (debug logging, access log on) serves every test
of this module; organizations, users and API keys are made in its store from this process
(as ``aztp-agents org create`` / ``keys create`` do on the server's host).

* Property-based isolation: random sequences of operations by three organizations (two users
  in one) over the HTTP API, checked against a model after every answer and in full at the end
  of every example.
* API keys: a revoked or rotated key is refused; no key ever reaches a log or the audit log.
* Federation: cross-domain connection authorization needs both sides, a link and the policy.
* Hosting: 3 organizations x 5 concurrent LangChain agent runs in this process, one remote
  client per organization; decisions carry the right organization and agent; a revocation in
  one organization never touches another's runs.
* The issuance rate limit answers a clear 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test
from typer.testing import CliRunner

from aztp_agents import Aztp
from aztp_agents.authority import Authority
from aztp_agents.cli import app as cli_app
from aztp_agents.credentials import generate_private_key, make_csr
from aztp_agents.errors import AuthenticationError, NotFoundError, RateLimitedError
from aztp_agents.server.testing import LiveServer, live_server
from aztp_agents.store import Store

#: Every API key made in this module: none may ever appear in the server's log.
ALL_KEYS: set[str] = set()


@dataclass
class Env:
    server: LiveServer
    home: Path
    admin: Authority  # the server's store, opened here (as the CLI does on the server's host)

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("multitenant-home")
    store = Store.open_sqlite(home / "aztp.db")
    admin = Authority(store)
    admin.local_principal()  # the store exists before the server opens it
    with live_server(home, log_level="debug", args=["--access-log"]) as server:
        yield Env(server, home, admin)
    log = server.log()
    store.close()
    assert "Traceback" not in log and "internal error" not in log, log[-4000:]
    leaked = [k[:12] for k in ALL_KEYS if k in log]
    assert not leaked, f"API keys in the server log: {leaked}"
    assert "api_access_key: aztp_" not in log.lower()


@pytest.fixture
def pg_env(pg_url: str, tmp_path: Path) -> Iterator[Env]:
    """:func:`env` on PostgreSQL: the server (``--database-url``) and the admin on one fresh
    database (issue 15: the tenancy property holds on both engines)."""
    store = Store.open_url(pg_url)
    admin = Authority(store)
    admin.local_principal()
    home = tmp_path / "pg-home"
    with live_server(
        home, log_level="debug", args=["--access-log", "--database-url", pg_url]
    ) as server:
        yield Env(server, home, admin)
    log = server.log()
    store.close()
    assert "Traceback" not in log and "internal error" not in log, log[-4000:]
    assert not [k[:12] for k in ALL_KEYS if k in log]


def new_org(env: Env, name: str, td: str) -> tuple[Any, str]:
    principal, key = env.admin.create_org(name, td)
    assert key is not None
    ALL_KEYS.add(key)
    return principal, key


def new_user_key(env: Env, org_id: str, user: str) -> tuple[Any, str]:
    principal = env.admin.create_user(org_id, user)
    _, key = env.admin.create_api_key(org_id, principal.user_id)
    ALL_KEYS.add(key)
    return principal, key


def aid(td: str, name: str) -> str:
    return f"aztp://{td}/workload/production/node/{name}"


def arun(coro: Any) -> Any:
    return asyncio.run(coro)


# ============================================================================ the HTTP actor


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


class Api:
    """One user of one organization speaking HTTP. Every answer must be the envelope, never
    a 5xx; every answer is scanned for tokens of other organizations (``world.foreign``)."""

    def __init__(
        self, url: str, key: str, label: str, world: World | None = None, org: int = -1
    ) -> None:
        self.http = httpx.Client(base_url=url, headers={"api_access_key": key}, timeout=30)
        self.label = label
        self.world = world
        self.org = org

    def call(
        self, method: str, path: str, *, json_body: Any = None, params: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        if self.world is not None:  # what we send may come back (echoed IDs, our own audit)
            self.world.mentioned[self.org] += "\n".join(_strings([path, json_body, params])) + "\n"
        r = self.http.request(method, path, json=json_body, params=params)
        body = r.json()
        assert set(body) == {"success", "message", "data"}, (method, path, body)
        assert r.status_code < 500, (method, path, body)
        assert body["success"] is (r.status_code < 400), (method, path, body)
        if self.world is not None:
            leaked = [t for t in self.world.foreign(self.org) if t in r.text]
            assert not leaked, (
                f"{self.label} {method} {path} answered another organization's {leaked}: {r.text[:600]}"
            )
        return r.status_code, body

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        status, body = self.call(method, path, **kw)
        assert status == 200, (self.label, method, path, body)
        return body["data"]

    def refused(self, method: str, path: str, *, status: int = 404, **kw: Any) -> dict[str, Any]:
        got, body = self.call(method, path, **kw)
        assert got == status, (self.label, method, path, got, body)
        return body

    def close(self) -> None:
        self.http.close()


# ============================================================================ the model


@dataclass
class Ident:
    org: int
    name: str
    doc_id: str
    is_global: bool
    revoked: bool = False
    generation: int = 0
    policies: set[str] = field(default_factory=set)


@dataclass
class Flow:
    org: int
    owner: str  # user id
    public: bool
    name: str
    members: set[str] = field(default_factory=set)


@dataclass
class Policy:
    org: int
    effect: str
    action: str


@dataclass
class World:
    """What every organization made, and who may see it."""

    n_orgs: int
    idents: dict[str, Ident] = field(default_factory=dict)
    flows: dict[str, Flow] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)
    links: set[tuple[int, str, str, str]] = field(default_factory=set)  # (org, src, dst, rel)
    #: cert PEM -> (aztp_id, generation)
    certs: dict[str, tuple[str, int]] = field(default_factory=dict)
    #: org -> its IDs (never shown to others)
    tokens: dict[int, set[str]] = field(default_factory=dict)
    mentioned: dict[int, str] = field(default_factory=dict)  # org -> what it sent itself

    def __post_init__(self) -> None:
        for i in range(self.n_orgs):
            self.tokens.setdefault(i, set())
            self.mentioned.setdefault(i, "")

    def foreign(self, org: int) -> list[str]:
        return [
            t
            for o, toks in self.tokens.items()
            if o != org
            for t in toks
            if t not in self.mentioned[org]
        ]

    def visible(self, flow_id: str, actor: Actor) -> bool:
        f = self.flows.get(flow_id)
        return f is not None and f.org == actor.org and (f.public or f.owner == actor.user_id)

    def own(self, aztp_id: str, actor: Actor) -> bool:
        i = self.idents.get(aztp_id)
        return i is not None and i.org == actor.org

    def linked(self, org: int, src: str, dst: str) -> bool:
        return any(
            o == org and ((s, d) == (src, dst) or (rel == "linked" and (s, d) == (dst, src)))
            for o, s, d, rel in self.links
        )


@dataclass
class Actor:
    label: str
    org: int
    org_id: str
    user_id: str
    td: str
    api: Api


_EXAMPLE = itertools.count()
_CTX: dict[str, Env] = {}

NAMES = ("agent", "tool", "db", "search")
FLOW_NAMES = ("prod", "dev", "ops")
#: Picks a record: (one of the actor's own organization?, which one modulo how many there are)
PICK = st.tuples(st.booleans(), st.integers(0, 1000))
POLICIES = (("Allow", "tool:*"), ("Deny", "tool:*"), ("Allow", "connect"))


class Isolation(RuleBasedStateMachine):
    """Organizations o0 (users u0 and u1), o1 and o2 act at random; identities, flows and
    policies of any organization may be handed to any actor, which must see them as absent.
    Each organization starts with the same names: identities ``agent`` and ``tool`` in a public
    flow ``prod``, agent linked to tool, one policy; u1 of o0 has a private flow ``dev``."""

    def __init__(self) -> None:
        super().__init__()
        env = _CTX["env"]
        n = next(_EXAMPLE)
        self.world = World(3)
        self.actors: list[Actor] = []
        first_users: dict[int, Any] = {}
        for org in range(3):
            td = f"o{org}-x{n}.test"
            principal, key = new_org(env, f"iso-o{org}-x{n}", td)
            first_users[org] = principal
            self.world.tokens[org].update({principal.org_id, principal.user_id})
            self.actors.append(
                Actor(
                    f"o{org}u0",
                    org,
                    principal.org_id,
                    principal.user_id,
                    td,
                    Api(env.url, key, f"o{org}u0", self.world, org),
                )
            )
        second, key = new_user_key(env, first_users[0].org_id, "second")
        self.actors.insert(
            1,
            Actor(
                "o0u1",
                0,
                second.org_id,
                second.user_id,
                self.actors[0].td,
                Api(env.url, key, "o0u1", self.world, 0),
            ),
        )
        for who in (0, 2, 3):
            a = self.actors[who]
            self.issue(who, "agent", who == 2)
            self.issue(who, "tool", False)
            self.create_flow(who, "prod", True)
            flow = next(k for k, f in self.world.flows.items() if f.org == a.org)
            for name in ("agent", "tool"):
                self._add(a, flow, aid(a.td, name))
            self.link(who, aid(a.td, "agent"), aid(a.td, "tool"), "tool_access")
            self.create_policy(who, POLICIES[a.org])
        self.create_flow(1, "dev", False)
        dev = list(self.world.flows)[-1]
        for name in ("agent", "tool"):
            self._add(self.actors[1], dev, aid(self.actors[1].td, name))

    # ---------------------------------------------------------------- helpers

    def actor(self, i: int) -> Actor:
        return self.actors[i]

    # A rule draws (own?, n): a record of the actor's organization half of the time, of any
    # organization otherwise. Seeding passes IDs instead.

    def _pick(self, records: dict[str, Any], who: int, pick: Any) -> Any:
        if not isinstance(pick, tuple):
            return pick
        own, n = pick
        keys = [k for k, r in records.items() if r.org == self.actors[who].org] if own else []
        keys = keys or list(records)
        return keys[n % len(keys)]

    def ident(self, who: int, pick: Any) -> Any:
        return self._pick(self.world.idents, who, pick)

    def flow(self, who: int, pick: Any) -> Any:
        return self._pick(self.world.flows, who, pick)

    def policy(self, who: int, pick: Any) -> Any:
        return self._pick(self.world.policies, who, pick)

    def _record_ident(
        self, actor: Actor, name: str, answer: dict[str, Any], is_global: bool
    ) -> str:
        doc = answer["identity"]
        aztp_id = doc["aztpId"]
        assert aztp_id == aid(actor.td, name), (aztp_id, actor.td)
        known = self.world.idents.get(aztp_id)
        if known is None:
            # a name another organization also used: a different ID and record
            assert all(i.doc_id != doc["_id"] for i in self.world.idents.values())
            self.world.idents[aztp_id] = Ident(actor.org, name, doc["_id"], is_global)
            self.world.tokens[actor.org].update({aztp_id, doc["_id"]})
        else:
            assert known.org == actor.org and known.doc_id == doc["_id"]  # idempotent re-connect
        return aztp_id

    # ---------------------------------------------------------------- identities

    @rule(who=st.integers(0, 3), name=st.sampled_from(NAMES), is_global=st.booleans())
    def issue(self, who: int, name: str, is_global: bool) -> None:
        a = self.actor(who)
        data = a.api.ok(
            "POST", "/v1/identities", json_body={"name": name, "isGlobalIdentity": is_global}
        )
        aztp_id = self._record_ident(a, name, data, is_global)
        assert data["valid"] is not self.world.idents[aztp_id].revoked

    @rule(who=st.integers(0, 3), name=st.sampled_from(NAMES))
    def issue_with_csr(self, who: int, name: str) -> None:
        a = self.actor(who)
        csr = make_csr(generate_private_key(), aid(a.td, name).replace("aztp://", "spiffe://"))
        data = a.api.ok("POST", "/v1/identities", json_body={"name": name, "csr": csr})
        aztp_id = self._record_ident(a, name, data, False)
        ident = self.world.idents[aztp_id]
        assert "privateKey" not in data
        if ident.revoked:
            assert not data["certificate"]
            return
        bundle = a.api.ok("GET", "/.well-known/spiffe-bundle")
        assert set(bundle) == {a.td}
        x5c = [k["x5c"][0] for k in bundle[a.td]["keys"] if k.get("use") == "x509-svid"]
        ca_der = "".join(data["caCertificate"].splitlines()[1:-1])
        assert ca_der in x5c  # signed by this organization's own CA
        self.world.certs[data["certificate"]] = (aztp_id, ident.generation)

    @rule(who=st.integers(0, 3), other=st.integers(0, 2), name=st.sampled_from(NAMES))
    def issue_in_foreign_trust_domain(self, who: int, other: int, name: str) -> None:
        a = self.actor(who)
        td = self.actors[[0, 2, 3][other]].td
        if td == a.td:
            return
        status, body = a.api.call(
            "POST", "/v1/identities", json_body={"name": name, "trustDomain": td}
        )
        if aid(a.td, name) in self.world.idents:
            # a re-connect by name that asks for another trust domain: an error, not ignored
            assert status == 409 and "trust domain" in body["message"], body
        else:
            assert status == 403 and "another organization" in body["message"], body

    @rule(who=st.integers(0, 3), ident=PICK)
    def get_identity(self, who: int, ident: Any) -> None:
        ident = self.ident(who, ident)
        a = self.actor(who)
        if self.world.own(ident, a):
            assert a.api.ok("GET", f"/v1/identities/{ident}")["aztpId"] == ident
        else:
            a.api.refused("GET", f"/v1/identities/{ident}")
            a.api.refused("GET", "/aztp/get-identity", params={"aztpId": ident})

    @rule(who=st.integers(0, 3), name=st.sampled_from(NAMES))
    def get_identity_by_name(self, who: int, name: str) -> None:
        a = self.actor(who)
        mine = aid(a.td, name)
        if mine in self.world.idents:
            assert a.api.ok("GET", f"/v1/identities/by-name/{name}")["aztpId"] == mine
            assert (
                a.api.ok("GET", "/aztp/get-identity", params={"agentName": name})["aztpId"] == mine
            )
        else:  # even when another organization has an identity of that name
            a.api.refused("GET", f"/v1/identities/by-name/{name}")

    @rule(who=st.integers(0, 3), ident=PICK)
    def revoke(self, who: int, ident: Any) -> None:
        ident = self.ident(who, ident)
        a = self.actor(who)
        if not self.world.own(ident, a):
            a.api.refused("POST", "/aztp/revoke-identity", json_body={"aztpId": ident})
            return
        rec = self.world.idents[ident]
        status, _ = a.api.call(
            "POST", "/aztp/revoke-identity", json_body={"aztpId": ident, "reason": "test"}
        )
        assert status == (409 if rec.revoked else 200)
        rec.revoked = True

    @rule(who=st.integers(0, 3), ident=PICK)
    def reissue(self, who: int, ident: Any) -> None:
        ident = self.ident(who, ident)
        a = self.actor(who)
        if not self.world.own(ident, a):
            a.api.refused("POST", "/aztp/reissue-revoked-identity", json_body={"aztpId": ident})
            return
        a.api.ok("POST", "/aztp/reissue-revoked-identity", json_body={"aztpId": ident})
        rec = self.world.idents[ident]
        rec.revoked = False
        rec.generation += 1

    @rule(who=st.integers(0, 3), ident=PICK, flow=st.none() | PICK)
    def verify(self, who: int, ident: Any, flow: Any) -> None:
        ident = self.ident(who, ident)
        flow = self.flow(who, flow)
        a = self.actor(who)
        data = a.api.ok(
            "POST", "/aztp/verify-identity", json_body={"aztpId": ident, "identityFlowId": flow}
        )
        if flow is not None and not self.world.visible(flow, a):
            assert (data["valid"], data["reason"]) == (False, "flow_unknown"), data
        elif not self.world.own(ident, a):
            assert (data["valid"], data["reason"]) == (False, "identity_unknown"), data
        else:
            rec = self.world.idents[ident]
            member = flow is None or ident in self.world.flows[flow].members
            expected = (
                "identity_revoked"
                if rec.revoked
                else "allowed"
                if member
                else "identity_not_in_flow"
            )
            assert (data["valid"], data["reason"]) == (expected == "allowed", expected), data

    @precondition(lambda self: self.world.certs)
    @rule(who=st.integers(0, 3), cert=PICK)
    def verify_credential(self, who: int, cert: Any) -> None:
        cert = list(self.world.certs)[cert[1] % len(self.world.certs)]
        a = self.actor(who)
        aztp_id, generation = self.world.certs[cert]
        data = a.api.ok("POST", "/v1/credentials/verify", json_body={"certificate": cert})
        rec = self.world.idents[aztp_id]
        if rec.org != a.org:
            assert (data["valid"], data["aztpId"], data["reason"]) == (
                False,
                None,
                "untrusted_chain",
            ), data
        else:
            assert data["valid"] is (not rec.revoked and generation == rec.generation), data

    @rule(who=st.integers(0, 3))
    def discover(self, who: int) -> None:
        a = self.actor(who)
        expected = {k for k, i in self.world.idents.items() if i.org == a.org and i.is_global}
        expected |= {
            m for f in self.world.flows.values() if f.org == a.org and f.public for m in f.members
        }
        for path in ("/aztp/discoverable", "/aztp/discover-with-trust-domain"):
            got = {d["aztpId"] for d in a.api.ok("GET", path)}
            assert got == expected, (path, got ^ expected)
        other = self.actors[(who + 2) % 4]
        if other.org != a.org:  # another organization's trust domain: nothing
            status, body = a.api.call(
                "GET", "/aztp/discover-with-trust-domain", params={"trustDomain": other.td}
            )
            assert status >= 400 or body["data"] == [], body

    # ---------------------------------------------------------------- flows

    @rule(who=st.integers(0, 3), name=st.sampled_from(FLOW_NAMES), public=st.booleans())
    def create_flow(self, who: int, name: str, public: bool) -> None:
        a = self.actor(who)
        clash = any(f.org == a.org and f.name == name for f in self.world.flows.values())
        status, body = a.api.call(
            "POST",
            "/identity-flow/create",
            json_body={"name": name, "discoverable": "public" if public else "private"},
        )
        if clash:
            assert status == 409, body
            return
        assert status == 200, body
        flow_id = body["data"]["_id"]
        assert flow_id not in self.world.flows  # same name elsewhere: another ID
        self.world.flows[flow_id] = Flow(a.org, a.user_id, public, name)
        self.world.tokens[a.org].add(flow_id)

    @rule(who=st.integers(0, 3), flow=PICK, ident=PICK)
    def add_member(self, who: int, flow: Any, ident: Any) -> None:
        flow = self.flow(who, flow)
        ident = self.ident(who, ident)
        a = self.actor(who)
        self._add(a, flow, ident)

    def _add(self, a: Actor, flow: str, ident: str) -> None:
        body = {"identityFlowId": flow, "identity": {"aztpId": ident}}
        if self.world.visible(flow, a) and self.world.own(ident, a):
            data = a.api.ok("POST", "/identity-flow/add-identity-to-flow", json_body=body)
            self.world.flows[flow].members.add(ident)
            assert {m["aztpId"] for m in data["identities"]} == self.world.flows[flow].members
        else:
            a.api.refused("POST", "/identity-flow/add-identity-to-flow", json_body=body)

    @rule(who=st.integers(0, 3), flow=PICK)
    def get_flow(self, who: int, flow: Any) -> None:
        flow = self.flow(who, flow)
        a = self.actor(who)
        if self.world.visible(flow, a):
            data = a.api.ok("GET", f"/v1/flows/{flow}")
            assert {m["aztpId"] for m in data["identities"]} == self.world.flows[flow].members
            a.api.ok("GET", f"/v1/flows/{flow}/health")
        else:  # another organization's flow, or another user's private one
            a.api.refused("GET", f"/v1/flows/{flow}")
            a.api.refused("GET", f"/v1/flows/{flow}/health")
            a.api.refused(
                "PUT", f"/identity-flow/update/{flow}", json_body={"description": "mine now"}
            )
            a.api.refused("DELETE", f"/identity-flow/delete/{flow}")

    # ---------------------------------------------------------------- links and policies

    @rule(who=st.integers(0, 3), src=PICK, dst=PICK, rel=st.sampled_from(("linked", "tool_access")))
    def link(self, who: int, src: Any, dst: Any, rel: str) -> None:
        src = self.ident(who, src)
        dst = self.ident(who, dst)
        a = self.actor(who)
        body = {"sourceIdentity": src, "targetIdentity": dst, "relationshipType": rel}
        if not (self.world.own(src, a) and self.world.own(dst, a)):
            a.api.refused("POST", "/aztp/create-workload-identity-link", json_body=body)
        elif src == dst:
            a.api.refused("POST", "/aztp/create-workload-identity-link", status=400, json_body=body)
        else:
            a.api.ok("POST", "/aztp/create-workload-identity-link", json_body=body)
            self.world.links.add((a.org, src, dst, rel))

    @rule(who=st.integers(0, 3), kind=st.sampled_from(POLICIES))
    def create_policy(self, who: int, kind: tuple[str, str]) -> None:
        a = self.actor(who)
        effect, action = kind
        doc = {"Statement": [{"Effect": effect, "Action": action}]}
        code = a.api.ok(
            "POST", "/v1/policies", json_body={"name": f"{effect}-{action}", "document": doc}
        )["code"]
        assert code not in self.world.policies
        self.world.policies[code] = Policy(a.org, effect, action)
        self.world.tokens[a.org].add(code)

    @rule(who=st.integers(0, 3), ident=PICK, code=PICK)
    def attach_policy(self, who: int, ident: Any, code: Any) -> None:
        ident = self.ident(who, ident)
        code = self.policy(who, code)
        a = self.actor(who)
        body = {"aztpId": ident, "code": code}
        if self.world.own(ident, a) and self.world.policies[code].org == a.org:
            a.api.ok("POST", "/v1/policies/attach", json_body=body)
            self.world.idents[ident].policies.add(code)
        else:
            a.api.refused("POST", "/v1/policies/attach", json_body=body)

    @rule(who=st.integers(0, 3), ident=PICK)
    def get_policies(self, who: int, ident: Any) -> None:
        ident = self.ident(who, ident)
        a = self.actor(who)
        if self.world.own(ident, a):
            got = {
                p["code"]
                for p in a.api.ok(
                    "GET", "/aztp/get-identity-access-policy", params={"aztpId": ident}
                )
            }
            assert got == self.world.idents[ident].policies
        else:
            a.api.refused("GET", "/aztp/get-identity-access-policy", params={"aztpId": ident})
            a.api.refused("GET", "/aztp/get-identity-action-permissions", params={"aztpId": ident})

    # ---------------------------------------------------------------- decisions

    def _expected_decision(self, a: Actor, flow: str, agent: str, tool: str) -> str:
        w = self.world
        if not w.visible(flow, a):
            return "flow_unknown"
        members = w.flows[flow].members
        for who, subject in (("agent", agent), ("tool", tool)):
            if not w.own(subject, a):
                return f"{who}_unknown"
            if w.idents[subject].revoked:
                return f"{who}_revoked"
            if subject not in members:
                return f"{who}_not_in_flow"
        if not w.linked(a.org, agent, tool):
            return "no_link"
        codes = w.idents[agent].policies | w.idents[tool].policies
        if any(w.policies[c].effect == "Deny" and w.policies[c].action == "tool:*" for c in codes):
            return "policy_denied"
        # With policies attached, a call needs a matching Allow (an allow-list restricts).
        if codes and not any(
            w.policies[c].effect == "Allow" and w.policies[c].action == "tool:*" for c in codes
        ):
            return "policy_denied"
        return "allowed"

    @rule(who=st.integers(0, 3), flow=PICK, agent=PICK, tool=PICK)
    def decide(self, who: int, flow: Any, agent: Any, tool: Any) -> None:
        flow = self.flow(who, flow)
        agent = self.ident(who, agent)
        tool = self.ident(who, tool)
        a = self.actor(who)
        body = {"flowId": flow, "agent": agent, "tool": tool, "toolName": "search"}
        data = a.api.ok("POST", "/v1/decisions", json_body=body)
        expected = self._expected_decision(a, flow, agent, tool)
        event(f"decision: {expected}")
        assert (data["reason"], data["allowed"]) == (expected, expected == "allowed"), (
            a.label,
            data,
        )
        assert data["organization"] == a.org_id

    @rule(who=st.integers(0, 3), swap=st.booleans(), code=st.none() | PICK)
    def decide_in_seeded_flow(self, who: int, swap: bool, code: Any) -> None:
        """The happy path of each organization (same names everywhere): agent -> tool in prod."""
        a = self.actor(who)
        prod = next(k for k, f in self.world.flows.items() if f.org == a.org and f.name == "prod")
        agent, tool = aid(a.td, "agent"), aid(a.td, "tool")
        if swap:
            agent, tool = tool, agent
        self.decide(who, prod, agent, tool)
        self.authorize(who, agent, tool, self.policy(who, code))

    @rule(who=st.integers(0, 3), src=PICK, dst=PICK, code=st.none() | PICK)
    def authorize(self, who: int, src: Any, dst: Any, code: Any) -> None:
        src = self.ident(who, src)
        dst = self.ident(who, dst)
        code = self.policy(who, code)
        a = self.actor(who)
        w = self.world
        data = a.api.ok(
            "POST",
            "/aztp/authorize-connection-with-identities",
            json_body={"aztpId": src, "requestAztpId": dst, "policyCode": code},
        )
        event(
            f"authorize: {'own' if w.own(src, a) and w.own(dst, a) else 'foreign'} -> {data['reason']}"
        )
        if code is not None and w.policies[code].org != a.org:
            assert (data["valid"], data["reason"]) == (False, "policy_unknown"), data
        elif not w.own(src, a):
            assert (data["valid"], data["reason"]) == (False, "source_unknown"), data
        elif w.idents[src].revoked:  # checks run in order: the source fails before the target
            assert (data["valid"], data["reason"]) == (False, "source_revoked"), data
        elif not w.own(dst, a):
            assert (data["valid"], data["reason"]) == (False, "target_unknown"), data
        else:
            ok = (
                not w.idents[src].revoked
                and not w.idents[dst].revoked
                and w.linked(a.org, src, dst)
                and (
                    code is None
                    or (w.policies[code].effect, w.policies[code].action) == ("Allow", "connect")
                )
            )
            assert data["valid"] is ok, data

    @rule(who=st.integers(0, 3))
    def audit(self, who: int) -> None:
        a = self.actor(who)
        entries = a.api.ok("GET", "/v1/audit")
        assert entries and {e["org_id"] for e in entries} == {a.org_id}

    # ---------------------------------------------------------------- the full check

    def teardown(self) -> None:
        try:
            for a in self.actors:
                self._check_views(a)
            cas = [self._ca_certs(a) for a in self.actors if a.label != "o0u1"]
            assert all(not (x & y) for x, y in itertools.combinations(cas, 2)), (
                "two organizations share a CA"
            )
        finally:
            for a in self.actors:
                a.api.close()

    def _ca_certs(self, a: Actor) -> set[str]:
        bundle = a.api.ok("GET", "/.well-known/spiffe-bundle")
        assert set(bundle) == {a.td}
        return {k["x5c"][0] for k in bundle[a.td]["keys"] if "x5c" in k}

    def _check_views(self, a: Actor) -> None:
        w = self.world
        own_ids = {k for k, i in w.idents.items() if i.org == a.org}
        assert {d["aztpId"] for d in a.api.ok("GET", "/v1/identities")} == own_ids
        visible = {k for k in w.flows if w.visible(k, a)}
        assert {f["_id"] for f in a.api.ok("GET", "/v1/flows")} == visible
        links = {
            (d["sourceIdentity"], d["targetIdentity"], d["relationshipType"])
            for d in a.api.ok("GET", "/v1/links")
        }
        assert links == {(s, d, r) for o, s, d, r in w.links if o == a.org}
        state = a.api.ok("GET", "/v1/state")
        assert state["organization"] == a.org_id
        assert set(state["identities"]) == own_ids
        assert set(state["flows"]) == visible  # not even a colleague's private flow
        assert {s for pair in state["links"] for s in pair} <= own_ids
        assert set(state["policies"]) <= own_ids
        entries = a.api.ok("GET", "/v1/audit")
        assert {e["org_id"] for e in entries} == {a.org_id}
        assert a.api.ok("GET", "/v1/audit/verify")["ok"] is True


def test_organizations_never_see_or_accept_each_others_records(env: Env) -> None:
    _run_isolation(env, examples=15)


def test_organizations_never_see_or_accept_each_others_records_on_postgresql(
    pg_env: Env,
) -> None:
    _run_isolation(pg_env, examples=10)


def _run_isolation(env: Env, *, examples: int) -> None:
    _CTX["env"] = env
    run_state_machine_as_test(
        Isolation,
        settings=settings(
            max_examples=examples,
            stateful_step_count=30,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=(Phase.explicit, Phase.generate, Phase.shrink),
        ),
    )


def test_another_users_private_flow_is_hidden_from_colleagues(env: Env) -> None:
    """Within one organization: user u1 never sees (nor decides in) user u0's private flow."""
    owner, key0 = new_org(env, "private-flows", "private-flows.test")
    _, key1 = new_user_key(env, owner.org_id, "colleague")
    u0, u1 = Api(env.url, key0, "u0"), Api(env.url, key1, "u1")
    try:
        secret = u0.ok(
            "POST", "/identity-flow/create", json_body={"name": "secret", "discoverable": "private"}
        )["_id"]
        shared = u0.ok(
            "POST", "/identity-flow/create", json_body={"name": "shared", "discoverable": "public"}
        )["_id"]
        agent = u0.ok("POST", "/v1/identities", json_body={"name": "agent"})["identity"]["aztpId"]
        tool = u0.ok("POST", "/v1/identities", json_body={"name": "tool"})["identity"]["aztpId"]
        for flow in (secret, shared):
            for member in (agent, tool):
                u0.ok(
                    "POST",
                    "/identity-flow/add-identity-to-flow",
                    json_body={"identityFlowId": flow, "aztpId": member},
                )
        u0.ok(
            "POST",
            "/aztp/create-workload-identity-link",
            json_body={
                "sourceIdentity": agent,
                "targetIdentity": tool,
                "relationshipType": "tool_access",
            },
        )
        decide = {"agent": agent, "tool": tool, "toolName": "search"}
        assert (
            u0.ok("POST", "/v1/decisions", json_body={**decide, "flowId": secret})["allowed"]
            is True
        )
        assert (
            u1.ok("POST", "/v1/decisions", json_body={**decide, "flowId": shared})["allowed"]
            is True
        )
        denied = u1.ok("POST", "/v1/decisions", json_body={**decide, "flowId": secret})
        assert (denied["allowed"], denied["reason"]) == (False, "flow_unknown")
        assert [f["_id"] for f in u1.ok("GET", "/v1/flows")] == [shared]
        u1.refused("GET", f"/v1/flows/{secret}")
        assert set(u0.ok("GET", "/v1/state")["flows"]) == {secret, shared}
        state = u1.ok("GET", "/v1/state")  # what u1's enforcement points decide from
        assert set(state["flows"]) == {shared}
        assert secret not in state["members"] and secret not in state["flowRevoked"]
        colleague = Aztp(api_key=key1, base_url=env.url)
        try:  # a remote enforcement point of u1 (local decision from its replica)
            local = colleague.backend.decide(
                flow_id=secret, agent=agent, tool=tool, tool_name="search"
            )
            assert (local.allowed, local.reason.value) == (False, "flow_unknown")
            assert colleague.backend.decide(
                flow_id=shared, agent=agent, tool=tool, tool_name="search"
            ).allowed
        finally:
            colleague.close()
    finally:
        u0.close()
        u1.close()


# ============================================================================ API keys


class Cli:
    """``aztp-agents --home HOME ... --json`` in this process, on the server's store."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.runner = CliRunner()
        self.outputs: list[str] = []

    def __call__(self, *args: str) -> Any:
        result = self.runner.invoke(cli_app, ["--home", str(self.home), *args, "--json"])
        assert result.exit_code == 0, (args, result.stdout, result.stderr)
        self.outputs.append(result.stdout + result.stderr)
        return json.loads(result.stdout)

    def close(self) -> None:
        from aztp_agents import client as client_module

        with client_module._AUTHORITIES_LOCK:
            authority = client_module._AUTHORITIES.pop((self.home / "aztp.db").resolve(), None)
        if authority is not None:
            with contextlib.suppress(Exception):
                authority.store.close()


def _status(url: str, key: str) -> int:
    return httpx.get(f"{url}/v1/flows", headers={"api_access_key": key}, timeout=10).status_code


def _refused_soon(url: str, key: str, within: float = 1.0) -> float:
    """Seconds until ``key`` is refused (401), then it must stay refused."""
    start = time.monotonic()
    while _status(url, key) != 401:
        assert time.monotonic() - start < within, "a revoked API key is still accepted"
        time.sleep(0.002)
    took = time.monotonic() - start
    assert all(_status(url, key) == 401 for _ in range(5))
    return took


def test_revoked_and_rotated_keys_are_refused_and_never_logged(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cli = Cli(env.home)
    try:
        org = cli("org", "create", "keyco", "--trust-domain", "keyco.test")
        cli("user", "create", "bob", "--org", "keyco")
        bob = cli("keys", "create", "--org", "keyco", "--user", "bob")
        admin_key, bob_key = org["api_key"], bob["api_key"]
        ALL_KEYS.update({admin_key, bob_key})
        listed = cli("keys", "list", "--org", "keyco")
        assert {k["id"] for k in listed} == {org["key_id"], bob["id"]}
        assert admin_key not in json.dumps(listed) and bob_key not in json.dumps(listed)

        # both keys work, through the remote client (sync and async) and plain HTTP
        client = Aztp(api_key=admin_key, base_url=env.url)
        agent = client.secure_connect_sync(None, "key-agent").identity.aztp_id
        assert arun(client.verify_identity_by_aztp_id(agent)) is True
        assert _status(env.url, bob_key) == 200

        rotated = cli("keys", "rotate", org["key_id"], "--org", "keyco")
        new_key = rotated["api_key"]
        ALL_KEYS.add(new_key)
        assert _status(env.url, new_key) == 200  # the new key works at once
        _refused_soon(env.url, admin_key)
        with pytest.raises(AuthenticationError) as refused:
            client.secure_connect_sync(None, "key-agent")
        assert admin_key not in str(refused.value)
        client.close()

        cli("keys", "revoke", bob["id"], "--org", "keyco")
        _refused_soon(env.url, bob_key)
        assert _status(env.url, new_key) == 200  # revoking one key leaves the others alone
        keys = {k["id"]: k for k in cli("keys", "list", "--org", "keyco")}
        assert keys[org["key_id"]]["revokedAt"] and keys[bob["id"]]["revokedAt"]
        assert not keys[rotated["id"]]["revokedAt"]
    finally:
        cli.close()
    after = Aztp(api_key=new_key, base_url=env.url)
    try:
        entries = arun(after.audit())
        assert {e["action"] for e in entries} >= {
            "org.create",
            "key.create",
            "key.rotate",
            "key.revoke",
        }
        text = json.dumps(entries)
    finally:
        after.close()
    # Shown once on stdout by 'org create' / 'keys create' / 'keys rotate' (by design); nowhere else.
    shown_once = {admin_key: 1, bob_key: 1, new_key: 1}
    for key, times in shown_once.items():
        assert sum(out.count(key) for out in cli.outputs) == times
        assert key not in caplog.text, "an API key reached the client's log"
        assert key not in text, "an API key reached the audit log"
        assert key not in env.server.log(), "an API key reached the server's log"
    assert caplog.records  # the client did log (at DEBUG) while the keys were used


def test_a_revoked_key_is_refused_by_the_very_next_request(env: Env) -> None:
    principal, _ = new_org(env, "strict-keys", "strict-keys.test")
    for _ in range(10):
        key_id, key = env.admin.create_api_key(principal.org_id, principal.user_id)
        ALL_KEYS.add(key)
        with httpx.Client(base_url=env.url, headers={"api_access_key": key}) as http:  # keep-alive
            assert http.get("/v1/flows").status_code == 200  # now in the server's key cache
            env.admin.revoke_api_key(principal.org_id, key_id)
            assert http.get("/v1/flows").status_code == 401


# ============================================================================ federation


def test_federation_needs_both_sides_a_link_and_the_policy(env: Env) -> None:
    _, key_a = new_org(env, "fed-a", "fed-a.test")
    _, key_b = new_org(env, "fed-b", "fed-b.test")
    a = Aztp(api_key=key_a, base_url=env.url)
    b = Aztp(api_key=key_b, base_url=env.url)

    async def scenario() -> None:
        ours = (await a.secure_connect(None, "caller")).identity.aztp_id
        theirs = (await b.secure_connect(None, "api")).identity.aztp_id
        doc = {"Statement": [{"Effect": "Allow", "Action": "connect", "Resource": theirs}]}
        allow = (await a.create_policy("connect-to-api", doc))["code"]
        deny = (
            await a.create_policy(
                "no-connect", {"Statement": [{"Effect": "Deny", "Action": "connect"}]}
            )
        )["code"]
        other = (
            await a.create_policy(
                "tools-only", {"Statement": [{"Effect": "Allow", "Action": "tool:*"}]}
            )
        )["code"]
        b_policy = (await b.create_policy("theirs", doc))["code"]

        async def may(code: str | None = None) -> bool:
            return await a.verify_authorize_identity_connection(ours, theirs, code)

        async def trust(client: Aztp, td: str, on: bool) -> None:
            if on:
                assert (await client.backend.acall("federate", trust_domain=td))["trusted"] is True
            else:
                assert (await client.backend.acall("unfederate", trust_domain=td))[
                    "trusted"
                ] is False

        # no federation: no link possible, no connection
        assert not await may()
        with pytest.raises(NotFoundError, match="federated"):
            await a.link_identities(ours, theirs, "service_chain")
        # one side only (a trusts b): the link can be made, the connection is still refused
        await trust(a, "fed-b.test", True)
        await a.link_identities(ours, theirs, "service_chain")
        assert not await may() and not await may(allow)
        # one side only (b trusts a)
        await trust(a, "fed-b.test", False)
        await trust(b, "fed-a.test", True)
        assert not await may() and not await may(allow)
        # both sides: through the link, and the policy when one is named
        await trust(a, "fed-b.test", True)
        assert await may()
        assert await may(allow)
        assert not await may(deny) and not await may(other)
        assert not await may(b_policy)  # another organization's policy is unknown here
        await a.unlink_identities(ours, theirs)
        assert not await may() and not await may(allow)
        await a.link_identities(ours, theirs, "service_chain")
        assert await may(allow)
        # the far side's revocation counts at once
        await b.revoke_identity(theirs, "rotating")
        assert not await may()
        await b.reissue_identity(theirs)
        assert await may()
        # federation is trust for connections, not shared views
        assert theirs not in {d["aztpId"] for d in await a.list_identities()}
        assert await a.verify_identity_by_aztp_id(theirs) is False
        assert theirs not in (await a.discover_identity())
        assert set(await a.get_trust_bundle()) == {"fed-a.test"}
        with pytest.raises(NotFoundError):
            await a.get_identity_by_aztp_id(theirs)
        with pytest.raises(NotFoundError):
            await a.revoke_identity(theirs)
        flow = await a.create_flow("fed-flow")
        with pytest.raises(NotFoundError):
            await a.add_identity_to_flow(flow["_id"], theirs)
        # removing federation on either side: refused at once
        await trust(b, "fed-a.test", False)
        assert not await may() and not await may(allow)
        await trust(b, "fed-a.test", True)
        assert await may(allow)
        await trust(a, "fed-b.test", False)
        assert not await may() and not await may(allow)
        # misuse
        from aztp_agents.errors import ValidationError

        with pytest.raises(ValidationError):
            await a.backend.acall("federate", trust_domain="fed-a.test")  # its own
        with pytest.raises(NotFoundError):
            await a.backend.acall("federate", trust_domain="nobody.test")
        with pytest.raises(NotFoundError):
            await a.backend.acall("unfederate", trust_domain="fed-b.test")  # not federated now
        actions = [e["action"] for e in await a.audit(action="federation.*")]
        assert actions == [
            "federation.trust",
            "federation.untrust",
            "federation.trust",
            "federation.untrust",
        ]

    try:
        arun(scenario())
    finally:
        a.close()
        b.close()


# ============================================================================ hosting


def test_three_organizations_five_concurrent_agent_runs_each(env: Env) -> None:
    """15 LangChain ``create_agent`` runs at once in one event loop, 5 per organization, each
    organization with its own remote client. Flow, agent and tool names are the same in all
    three. Mid-run, organization red revokes its agent-0."""
    pytest.importorskip("langchain")
    from aztp_langchain import AztpMiddleware, current_agent
    from aztp_langchain.testing import ScriptedChatModel, call
    from langchain.agents import create_agent
    from langchain_core.messages import ToolMessage
    from langchain_core.tools import StructuredTool

    orgs = ("red", "green", "blue")
    runs = 5
    principals: dict[str, Any] = {}
    clients: dict[str, Aztp] = {}
    for org in orgs:
        principals[org], key = new_org(env, f"host-{org}", f"{org}.host.test")
        clients[org] = Aztp(api_key=key, base_url=env.url)
    model = ScriptedChatModel(
        script=[
            [call("whoami"), call("search", query="first")],
            [call("checkpoint")],  # every run waits here until red's agent-0 is revoked
            [call("whoami"), call("search", query="second")],
            "done",
        ]
    )
    searches = dict.fromkeys(orgs, 0)
    seen: list[tuple[str, Any]] = []

    async def main() -> tuple[
        dict[str, list[Any]], dict[str, list[Any]], dict[str, list[dict[str, Any]]]
    ]:
        gate = asyncio.Event()
        arrived = 0
        middlewares: dict[str, list[AztpMiddleware]] = {}

        def tools(org: str) -> list[Any]:
            async def whoami() -> str:
                await asyncio.sleep(0)
                return str(current_agent())

            async def search(query: str) -> str:
                searches[org] += 1
                await asyncio.sleep(0)
                return f"{org}: results for {query}"

            async def checkpoint() -> str:
                nonlocal arrived
                arrived += 1
                if arrived == len(orgs) * runs:
                    await clients["red"].revoke_identity(
                        middlewares["red"][0].agent_id or "", "compromised"
                    )
                    gate.set()
                await asyncio.wait_for(gate.wait(), 60)
                return "go on"

            return [
                StructuredTool.from_function(
                    coroutine=f, name=f.__name__, description=f"The {f.__name__} tool."
                )
                for f in (whoami, search, checkpoint)
            ]

        graphs: dict[str, list[Any]] = {}
        for org in orgs:
            middlewares[org] = [
                AztpMiddleware(flow="hosting", agent_name=f"agent-{i}", client=clients[org])
                for i in range(runs)
            ]
            for mw in middlewares[org]:
                mw.guard.listeners.append(lambda d, org=org: seen.append((org, d)))
            org_tools = tools(org)
            graphs[org] = [
                create_agent(model, org_tools, middleware=[mw]) for mw in middlewares[org]
            ]
        jobs = [g.ainvoke({"messages": [("user", "go")]}) for org in orgs for g in graphs[org]]
        results = await asyncio.gather(*jobs)
        by_org = {org: list(results[i * runs : (i + 1) * runs]) for i, org in enumerate(orgs)}
        audits: dict[str, list[dict[str, Any]]] = {}
        for org in orgs:  # local decisions reach the server's audit log in batches
            deadline = time.monotonic() + 20
            while True:
                audits[org] = await clients[org].audit(action="decision.tool_call")
                if len(audits[org]) >= runs * 5 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
        return by_org, middlewares, audits

    try:
        results, middlewares, audits = arun(main())
        agent_ids = {org: [mw.agent_id for mw in middlewares[org]] for org in orgs}
        all_ids = [x for ids in agent_ids.values() for x in ids]
        assert len(set(all_ids)) == len(orgs) * runs  # same names, different identities
        revoked = agent_ids["red"][0]
        for org in orgs:
            org_id = principals[org].org_id
            for i, (result, agent) in enumerate(zip(results[org], agent_ids[org], strict=True)):
                msgs = [m for m in result["messages"] if isinstance(m, ToolMessage)]
                whoami = [m.content for m in msgs if m.name == "whoami" and m.status != "error"]
                if agent == revoked:
                    assert whoami == [agent]
                    assert [m.status for m in msgs][-2:] == ["error", "error"]
                    assert "agent_revoked" in msgs[-1].content
                else:  # contextvars: every run saw its own agent, before and after the revocation
                    assert whoami == [agent, agent], (org, i, whoami)
                    assert all(m.status != "error" for m in msgs), (org, i)
            # every decision carries this organization and one of its agents
            mine = [d for o, d in seen if o == org]
            assert len(mine) == runs * 5
            assert {d.organization for d in mine} == {org_id}
            assert {d.agent for d in mine} == set(agent_ids[org])
            denied = [d for d in mine if not d.allowed]
            assert [(d.agent, d.reason.value) for d in denied] == (
                [(revoked, "agent_revoked")] * 2 if org == "red" else []
            )
            entries = audits[org]
            assert len(entries) == runs * 5
            assert {e["org_id"] for e in entries} == {org_id}
            assert sorted(e["subject"] for e in entries) == sorted(
                a for a in agent_ids[org] for _ in range(5)
            )
            bad = [
                (e["subject"], e["data"]["reason"])
                for e in entries
                if e["data"]["reason"] != "allowed"
            ]
            assert bad == ([(revoked, "agent_revoked")] * 2 if org == "red" else [])
            names = {a: f"agent-{i}" for i, a in enumerate(agent_ids[org])}
            assert all(e["data"]["context"]["agent"] == names[e["subject"]] for e in entries)
        assert searches == {"red": 2 * runs - 1, "green": 2 * runs, "blue": 2 * runs}
        # the same name elsewhere is untouched
        for org in ("green", "blue"):
            assert arun(clients[org].verify_identity_by_aztp_id(agent_ids[org][0])) is True
    finally:
        for client in clients.values():
            client.close()


# ============================================================================ rate limit


def test_issuance_rate_limit_is_a_clear_429_per_organization(tmp_path: Path) -> None:
    """The HTTP app over an authority with a low issuance limit, served in this process
    (``aztp-agents serve`` has no option for the limit)."""
    from aztp_agents.server import create_app
    from aztp_agents.server.testing import serving

    store = Store.open_sqlite(tmp_path / "aztp.db")
    authority = Authority(store, issuance_rate=(1.0, 3))
    _, busy = authority.create_org("busy", "busy.test")
    _, calm = authority.create_org("calm", "calm.test")
    assert busy and calm
    try:
        with serving(create_app(authority)) as url:
            with httpx.Client(base_url=url, timeout=10) as http:
                hb, hc = {"api_access_key": busy}, {"api_access_key": calm}
                for i in range(3):
                    assert (
                        http.post(
                            "/v1/identities", headers=hb, json={"name": f"burst-{i}"}
                        ).status_code
                        == 200
                    )
                r = http.post("/v1/identities", headers=hb, json={"name": "one-too-many"})
                assert r.status_code == 429
                body = r.json()
                assert body["success"] is False and body["data"]["code"] == "rate_limited"
                assert "too many identity issuances for this organization" in body["message"]
                assert 0 < body["data"]["retryAfter"] <= 1.0 and int(r.headers["retry-after"]) >= 1
                official = http.post(
                    "/aztp/issue-identity", headers=hb, json={"workloadId": "via-wire"}
                )
                assert official.status_code == 429
                # another organization is not limited by this one
                assert (
                    http.post("/v1/identities", headers=hc, json={"name": "calm-0"}).status_code
                    == 200
                )
            # the remote client raises the typed error with the server's retry hint
            client = Aztp(api_key=busy, base_url=url)
            try:
                with pytest.raises(RateLimitedError, match="retry in") as limited:
                    client.secure_connect_sync(None, "via-client")
                time.sleep(limited.value.retry_after + 0.05)
                assert client.secure_connect_sync(None, "via-client").identity.valid
            finally:
                client.close()
    finally:
        store.close()
