"""The console over plain HTTP (httpx) against a real server process: the session cookie's
flags, sign-in, CSRF and origin refusals (the refused action did not happen), actions going
through the authority and audited with the acting user, tenant and private-flow isolation,
escaping, the live decisions stream and the audit export."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import httpx
import pytest

from aztp_agents import Aztp
from aztp_agents.authority import Authority
from aztp_agents.guard import Guard
from aztp_agents.remote import RemoteBackend
from aztp_agents.store import Store
from tests.support.console import add_user, console_client, csrf_of, flow_member_status
from tests.support.remote import Server, make_tls, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("console-http") / "home")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def crew(server: Server) -> Iterator[tuple[Guard, str, str]]:
    """Agent ``analyst`` with tool ``lookup`` in flow ``ops`` of organization acme, deciding
    through a remote guard in this process."""
    backend = RemoteBackend(server.url, api_key=server.key, audit_interval=0.05)
    guard = Guard("ops", client=Aztp(backend=backend))
    enrolled = guard.enroll("analyst", ["lookup"])
    assert backend.start(wait=5.0)
    try:
        yield guard, enrolled.agent_id, enrolled.tools["lookup"]
    finally:
        guard.client.close()


def _confirm_form(client: httpx.Client, query: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The confirmation page's form: its action and its fields (CSRF token included)."""
    page = client.get("/console/confirm", params=query)
    assert page.status_code == 200, page.text
    action = re.search(r'<form method="post" action="(/console/act/[a-z_]+)"', page.text)
    assert action
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
    fields = {k: v.replace("&amp;", "&").replace("&#x27;", "'") for k, v in fields.items()}
    return action.group(1), fields


def test_sign_in_sets_a_strict_httponly_session_cookie_without_the_key(server: Server) -> None:
    client = httpx.Client(base_url=server.url, follow_redirects=False)
    assert client.get("/console/flows").headers["location"] == "/console/login"
    answer = client.post(
        "/console/login", data={"api_key": server.key}, headers={"Origin": server.url}
    )
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")}
    assert {"httponly", "samesite", "path"} <= attrs
    assert "samesite=strict" in cookie.lower()
    assert "secure" not in attrs  # plain http here; over https it is Secure
    assert server.key not in cookie
    page = client.get("/console/flows")
    assert page.status_code == 200 and "Sign out" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_the_assets_are_served_from_the_package(server: Server) -> None:
    for name, kind in (("console.css", "text/css"), ("console.js", "text/javascript")):
        answer = httpx.get(f"{server.url}/console/static/{name}")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(kind)
    assert httpx.get(f"{server.url}/console/static/..%2Fsessions.py").status_code == 404
    assert httpx.get(f"{server.url}/console/static/sessions.py").status_code == 404


def test_over_https_the_cookie_is_secure(tmp_path_factory: pytest.TempPathFactory) -> None:
    base = tmp_path_factory.mktemp("console-tls")
    tls = make_tls(base / "tls")
    srv = start_server(base / "home", tls=tls)
    try:
        with httpx.Client(base_url=srv.url, verify=str(tls[2])) as client:
            answer = client.post(
                "/console/login", data={"api_key": srv.key}, headers={"Origin": srv.url}
            )
            assert answer.status_code == 303
            attrs = {a.strip().lower() for a in answer.headers["set-cookie"].split(";")[1:]}
            assert {"secure", "httponly", "samesite=strict"} <= attrs
            # the origin check compares the scheme too
            plain = srv.url.replace("https://", "http://")
            refused = client.post(
                "/console/login", data={"api_key": srv.key}, headers={"Origin": plain}
            )
            assert refused.status_code == 403
    finally:
        srv.stop()


def test_a_wrong_key_is_refused_and_gets_no_session(server: Server) -> None:
    answer = httpx.post(
        f"{server.url}/console/login",
        data={"api_key": "not-a-key"},
        headers={"Origin": server.url},
    )
    assert answer.status_code == 401 and "set-cookie" not in answer.headers


def test_forged_posts_are_refused_and_change_nothing(
    server: Server, crew: tuple[Guard, str, str]
) -> None:
    guard, agent, _tool = crew
    client = console_client(server.url, server.key)
    action, fields = _confirm_form(
        client, {"op": "revoke_flow", "aztpId": agent, "flowId": guard.flow_id}
    )
    forged = [
        ({**fields, "csrf": ""}, {"Origin": server.url}),  # no token
        ({**fields, "csrf": "x" * 43}, {"Origin": server.url}),  # a wrong token
        (fields, {"Origin": "https://evil.example"}),  # right token, foreign origin
        (fields, {}),  # no Origin nor Referer at all
        (fields, {"Referer": "https://evil.example/page"}),
    ]
    for body, headers in forged:
        answer = client.post(action, data=body, headers=headers)
        assert answer.status_code == 403, (body, headers)
        assert flow_member_status(server.url, server.key, guard.flow_id, agent) == "active"
    # another site's page cannot sign a victim in either (login CSRF)
    answer = httpx.post(
        f"{server.url}/console/login",
        data={"api_key": server.key},
        headers={"Origin": "https://evil.example"},
    )
    assert answer.status_code == 403 and "set-cookie" not in answer.headers
    # ... and the decision still allows
    assert guard.check(agent, crew[2], "lookup").allowed


def test_revoke_and_reinstate_from_the_console_go_through_the_authority(
    server: Server, crew: tuple[Guard, str, str]
) -> None:
    guard, agent, tool = crew
    client = console_client(server.url, server.key)
    back = f"/console/flow?id={guard.flow_id}"
    action, fields = _confirm_form(
        client, {"op": "revoke_flow", "aztpId": agent, "flowId": guard.flow_id, "back": back}
    )
    answer = client.post(
        action, data={**fields, "reason": "incident 42"}, headers={"Origin": server.url}
    )
    assert answer.status_code == 303 and answer.headers["location"] == back
    assert flow_member_status(server.url, server.key, guard.flow_id, agent) == "revoked"
    page = client.get(back).text
    assert "Identity revoked in the flow" in page and "incident 42" in page
    assert 'class="node revoked_in_flow"' in page  # the graph shows it
    # audited as the acting user, like the same call through the API
    me = httpx.get(
        f"{server.url}/v1/audit",
        params={"action": "flow.revoke_identity"},
        headers={"api_access_key": server.key},
    ).json()["data"][-1]
    user_id = json.loads(
        httpx.get(
            f"{server.url}/v1/flows/{guard.flow_id}", headers={"api_access_key": server.key}
        ).text
    )["data"]["userId"]
    assert me["subject"] == agent and me["actor"] == user_id
    deadline = time.monotonic() + 5
    while guard.check(agent, tool, "lookup").allowed:  # the feed brings it here (small bound)
        assert time.monotonic() < deadline
        time.sleep(0.01)
    action, fields = _confirm_form(
        client, {"op": "reinstate_flow", "aztpId": agent, "flowId": guard.flow_id, "back": back}
    )
    assert client.post(action, data=fields, headers={"Origin": server.url}).status_code == 303
    assert flow_member_status(server.url, server.key, guard.flow_id, agent) == "active"


def test_another_organization_sees_none_of_it(server: Server, crew: tuple[Guard, str, str]) -> None:
    guard, agent, _tool = crew
    other = console_client(server.url, server.org("globex", "globex.test"))
    flows = other.get("/console/flows").text
    assert "ops" not in re.sub(r"<header>.*?</header>", "", flows)  # nothing of acme's
    assert agent not in other.get("/console/identities").text
    assert other.get("/console/flow", params={"id": guard.flow_id}).status_code == 404
    assert other.get("/console/identity", params={"id": agent}).status_code == 404
    action, fields = _confirm_form(
        other, {"op": "revoke", "aztpId": agent, "back": "/console/identities"}
    )
    answer = other.post(action, data=fields, headers={"Origin": server.url})
    assert answer.status_code == 303
    assert "not found" in other.get("/console/identities").text  # the error, as a message
    status = httpx.get(
        f"{server.url}/v1/identities/{agent}", headers={"api_access_key": server.key}
    ).json()["data"]["status"]
    assert status == "active"
    export = other.get("/console/audit/export").text
    assert agent not in export and guard.flow_id not in export


def test_another_users_private_flow_is_never_shown(
    server: Server, crew: tuple[Guard, str, str]
) -> None:
    guard, _agent, _tool = crew
    colleague = console_client(server.url, add_user(server.home, server.key, "colleague"))
    assert guard.flow_id not in colleague.get("/console/flows").text
    assert colleague.get("/console/flow", params={"id": guard.flow_id}).status_code == 404
    assert guard.flow_id not in colleague.get("/console/decisions").text


def test_revoking_the_key_ends_its_console_sessions(server: Server) -> None:
    store = Store.open_sqlite(server.home / "aztp.db")
    try:
        authority = Authority(store)
        org_id = authority.authenticate(server.key).org_id
        user = authority.create_user(org_id, "short-lived")
        key_id, key = authority.create_api_key(org_id, user.user_id)
        client = console_client(server.url, key)
        assert client.get("/console/flows").status_code == 200
        authority.revoke_api_key(org_id, key_id)
    finally:
        store.close()
    answer = client.get("/console/flows")
    assert answer.status_code == 303 and answer.headers["location"] == "/console/login"


def test_malformed_requests_get_an_answer_not_a_server_error(
    server: Server, crew: tuple[Guard, str, str]
) -> None:
    guard, agent, _tool = crew
    client = console_client(server.url, server.key)
    token = csrf_of(client.get("/console/flows").text)
    gets = [
        ("/console/flow", {}),
        ("/console/flow", {"id": "x" * 5000}),
        ("/console/identity", {"id": "not an id"}),
        ("/console/identity", {"id": "aztp://acme.test/\x00"}),
        ("/console/explain", {"agent": agent}),
        ("/console/explain", {"agent": agent, "tool": "?", "flow": guard.flow_id}),
        ("/console/confirm", {"op": "revoke"}),
        ("/console/confirm", {"op": "nope"}),
        ("/console/audit", {"limit": "-5", "action": "[[["}),
        ("/console/decisions/stream", {"after": "x", "flow": "\u2028"}),
        ("/console/static/", {}),
    ]
    for path, params in gets:
        if path.endswith("stream"):
            with client.stream("GET", path, params=params) as answer:
                assert answer.status_code == 200
            continue
        answer = client.get(path, params=params)
        assert answer.status_code < 500, (path, params, answer.status_code)
    posts = [
        ("/console/act/revoke", {"csrf": token}),
        ("/console/act/revoke", {"csrf": token, "aztpId": "nonsense"}),
        ("/console/act/nope", {"csrf": token}),
        (
            "/console/act/unlink",
            {"csrf": token, "source": agent, "target": agent, "relationshipType": "X"},
        ),
    ]
    for path, data in posts:
        answer = client.post(path, data=data, headers={"Origin": server.url})
        assert answer.status_code < 500, (path, data, answer.status_code)
    assert (
        client.post(
            "/console/login", content=b"\xff\xfe=%%%", headers={"Origin": server.url}
        ).status_code
        == 401
    )


def test_identities_are_found_by_name(server: Server, crew: tuple[Guard, str, str]) -> None:
    _guard, agent, tool = crew
    client = console_client(server.url, server.key)
    page = client.get("/console/identities", params={"q": "analy"}).text
    assert agent in page and tool not in page
    assert tool in client.get("/console/identities").text
    for wildcard in ("%", "_"):  # taken literally, not as SQL wildcards
        assert agent not in client.get("/console/identities", params={"q": wildcard}).text


def test_user_supplied_names_are_escaped(server: Server) -> None:
    evil = '<script>alert("x")</script>'
    created = httpx.post(
        f"{server.url}/identity-flow/create",
        json={"name": evil, "discoverable": "public"},
        headers={"api_access_key": server.key},
    )
    assert created.status_code == 200, created.text
    page = console_client(server.url, server.key).get("/console/flows").text
    assert evil not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def _next_event(lines: Iterator[str]) -> dict[str, object]:
    for line in lines:
        if line.startswith("data: ") and line != "data: {}":
            return json.loads(line[6:])  # type: ignore[no-any-return]
    raise AssertionError("the stream ended")


def test_the_live_stream_sends_new_decisions_of_the_callers_flows_only(
    server: Server, crew: tuple[Guard, str, str]
) -> None:
    guard, agent, tool = crew
    client = console_client(server.url, server.key)
    page = client.get("/console/decisions", params={"denied": "1"}).text
    stream = re.search(r'data-stream="([^"]+)"', page)
    assert stream
    url = stream.group(1).replace("&amp;", "&")
    other_backend = RemoteBackend(server.url, api_key=server.org("initech", "initech.test"))
    other = Guard("ops", client=Aztp(backend=other_backend))
    try:
        theirs = other.enroll("analyst", ["lookup"])
        with client.stream("GET", url, timeout=30) as answer:
            assert answer.headers["content-type"].startswith("text/event-stream")
            lines = answer.iter_lines()
            # another organization's denial and our allow come first; only our denial shows
            other.check(theirs.agent_id, "aztp://initech.test/workload/production/node/nope", "x")
            assert guard.check(agent, tool, "lookup").allowed
            unknown = "aztp://acme.test/workload/production/node/not-a-tool"
            denied = guard.check(agent, unknown, "not-a-tool")
            assert not denied.allowed
            event = _next_event(lines)
        assert event["allowed"] is False and event["reason"] == denied.reason.value
        assert event["agentName"] == "analyst" and event["flow"] == guard.flow_id
        assert isinstance(event["explain"], str)
        explained = client.get(str(event["explain"]))
        assert explained.status_code == 200 and denied.reason.value in explained.text
    finally:
        other.client.close()


def test_audit_page_verifies_the_chain_and_exports_json_lines(server: Server) -> None:
    client = console_client(server.url, server.key)
    page = client.get("/console/audit", params={"action": "flow.*"}).text
    assert "chain intact" in page
    export = client.get("/console/audit/export", params={"action": "flow.*"})
    assert export.headers["content-type"].startswith("application/x-ndjson")
    entries = [json.loads(line) for line in export.text.splitlines()]
    assert entries and all(e["action"].startswith("flow.") for e in entries)
    # the acting user, by name
    mine = client.get("/console/audit/export", params={"action": "flow.*", "actor": "admin"})
    assert [json.loads(line) for line in mine.text.splitlines()] == entries
    nobody = client.get("/console/audit/export", params={"actor": "nobody"})
    assert nobody.status_code == 200 and nobody.text == ""


def test_sign_out_ends_the_session_server_side(server: Server) -> None:
    client = console_client(server.url, server.key)
    session_id = client.cookies["aztp_console"]
    token = csrf_of(client.get("/console/flows").text)
    answer = client.post("/console/logout", data={"csrf": token}, headers={"Origin": server.url})
    assert answer.status_code == 303
    replay = httpx.get(f"{server.url}/console/flows", cookies={"aztp_console": session_id})
    assert replay.status_code == 303 and replay.headers["location"] == "/console/login"


def _act(client: httpx.Client, origin: str, query: dict[str, str]) -> str:
    """Confirm and post one action; the flash message (or error) of the page it lands on."""
    action, fields = _confirm_form(client, {**query, "back": "/console/identities"})
    answer = client.post(action, data=fields, headers={"Origin": origin})
    assert answer.status_code == 303
    page = client.get(answer.headers["location"]).text
    found = re.search(r'<p class="flash (?:ok|bad)"[^>]*>([^<]*)</p>', page)
    assert found, page
    return found.group(1)


def test_every_other_action_goes_through_the_authority(
    server: Server, crew: tuple[Guard, str, str]
) -> None:
    _guard, agent, tool = crew
    api = {"api_access_key": server.key}
    client = console_client(server.url, server.key)

    def linked() -> bool:
        links = httpx.get(f"{server.url}/v1/links", params={"aztpId": agent}, headers=api)
        return any(x["targetIdentity"] == tool for x in links.json()["data"])

    link = {"source": agent, "target": tool, "relationshipType": "tool_access"}
    assert linked()
    assert _act(client, server.url, {"op": "unlink", **link}) == "Link removed"
    assert not linked()
    assert _act(client, server.url, {"op": "restore_link", **link}) == "Link restored"
    assert linked()

    policy = httpx.post(
        f"{server.url}/v1/policies",
        json={
            "name": "lookup-only",
            "document": {"Statement": [{"Effect": "Allow", "Action": "tool:lookup"}]},
        },
        headers=api,
    ).json()["data"]

    def attached() -> list[str]:
        answer = httpx.get(
            f"{server.url}/aztp/get-identity-access-policy", params={"aztpId": tool}, headers=api
        )
        return [x["code"] for x in answer.json()["data"]]

    query = {"aztpId": tool, "code": policy["code"]}
    assert _act(client, server.url, {"op": "attach", **query}) == "Policy attached"
    assert attached() == [policy["code"]]
    assert _act(client, server.url, {"op": "detach", **query}) == "Policy detached"
    assert attached() == []

    def status() -> str:
        answer = httpx.get(f"{server.url}/v1/identities/{tool}", headers=api)
        return str(answer.json()["data"]["status"])

    assert _act(client, server.url, {"op": "revoke", "aztpId": tool}) == "Identity revoked"
    assert status() == "revoked"
    assert _act(client, server.url, {"op": "reissue", "aztpId": tool}) == "Identity reissued"
    assert status() == "active"
