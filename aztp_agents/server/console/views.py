"""The console's pages, built from authority reads made as the signed-in principal.

Each function is synchronous (the store blocks: the router runs it in a worker thread),
takes the authority and the principal, reads through the same authority operations the API
routes call (so the organization and flow visibility are the API's, not re-implemented),
and returns the page body as HTML (every value escaped by :mod:`.html`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...audit import AuditEntry
from ...authority import Authority, Principal
from ...authority.console_reads import audit_head, credentials_of, find_identities
from ...errors import AztpError, NotFoundError
from .graph import Edge, Node, flow_graph
from .html import badge, e, link, table, url

__all__ = [
    "DECISION",
    "Names",
    "audit_page",
    "decision_event",
    "decision_events",
    "decision_matches",
    "decisions_page",
    "explain_page",
    "flow_page",
    "flows_page",
    "identities_page",
    "identity_page",
]

DECISION = "decision.tool_call"
_HEALTH = {"healthy": "ok", "warning": "warn", "critical": "bad"}
#: Identities listed on one page (an organization may hold a million).
_PAGE = 200


class Names:
    """Names of identities and flows, looked up as the principal, one at a time and
    remembered (a page or a stream shows a few of them; an organization may hold a million
    identities). A flow the principal may not see (another user's private flow, another
    organization's, a deleted one) has no name: :meth:`visible` is False and nothing of it
    is shown. Make a new instance to forget (the live stream does every few seconds, so a
    flow made private stops showing soon after)."""

    def __init__(self, authority: Authority, p: Principal) -> None:
        self.authority = authority
        self.p = p
        self._identities: dict[str, str] = {}
        self._flows: dict[str, str | None] = {}

    def remember(self, aztp_id: str, name: str) -> None:
        self._identities[aztp_id] = name

    def identity(self, aztp_id: object) -> str:
        key = str(aztp_id or "")
        if key not in self._identities:
            try:
                self._identities[key] = self.authority.get_identity(self.p, key)["name"]
            except AztpError:  # not an identity of the organization: show what was recorded
                self._identities[key] = key
        return self._identities[key]

    def flow_name(self, flow_id: object) -> str | None:
        """The flow's name, or None if the principal may not see it."""
        key = str(flow_id or "")
        if key not in self._flows:
            try:
                with self.authority.store.read() as conn:
                    # the authority's own visibility rule (organization, public or owner)
                    self._flows[key] = self.authority.flows.row(conn, self.p, key).name
            except AztpError:
                self._flows[key] = None
        return self._flows[key]

    def visible(self, flow_id: object) -> bool:
        return self.flow_name(flow_id) is not None

    def flow(self, flow_id: object) -> str:
        return self.flow_name(flow_id) or str(flow_id or "")


def _status(status: str) -> str:
    return badge(status, "ok" if status == "active" else "bad")


# ----------------------------------------------------------------------------------- flows


def flows_page(authority: Authority, p: Principal) -> str:
    rows = []
    for flow in authority.list_flows(p):
        health = authority.flow_health(p, flow["_id"])
        revoked = sum(1 for m in flow["identities"] if m["status"] == "revoked")
        rows.append(
            [
                link(flow["name"], url("flow", id=flow["_id"])),
                e(flow["discoverable"]),
                e(len(flow["identities"])),
                badge(revoked, "bad" if revoked else "muted"),
                badge(health["status"], _HEALTH[health["status"]])
                + f' <span class="muted">{e(health["securityScore"])} % valid</span>',
            ]
        )
    return (
        '<p class="muted">Health is the share of members valid in the flow: healthy ≥ 90 %, '
        "warning ≥ 70 %, else critical (an empty flow is critical).</p>"
        + table(
            ["Flow", "Visibility", "Members", "Revoked in flow", "Health"],
            rows,
            empty="No flows yet: secure a crew or run 'aztp-agents flow create'.",
        )
    )


def _in_flow(doc: Mapping[str, Any], flow_id: str) -> bool:
    return doc["scope"] == "organization" or flow_id in doc["identityFlowIds"]


def flow_page(authority: Authority, p: Principal, flow_id: str) -> tuple[str, str]:
    """(title, body) of one flow: health, members with actions, the graph, the links."""
    flow = authority.get_flow(p, flow_id)
    health = authority.flow_health(p, flow_id)
    valid = {r["aztpId"]: r for r in health["identities"]}
    members = {m["aztpId"]: m for m in flow["identities"]}
    names = Names(authority, p)
    docs = {}
    for aztp_id in members:
        try:
            docs[aztp_id] = authority.get_identity(p, aztp_id)
        except AztpError:  # gone since it was added: shown as unknown
            continue
        names.remember(aztp_id, docs[aztp_id]["name"])
    here = url("flow", id=flow_id)
    nodes, rows = [], []
    for aztp_id, member in members.items():
        doc = docs.get(aztp_id, {"name": aztp_id, "status": "unknown"})
        in_flow = member["status"]
        node_status = (
            "revoked"
            if doc["status"] != "active"
            else "revoked_in_flow"
            if in_flow == "revoked"
            else "active"
        )
        nodes.append(Node(aztp_id, doc["name"], node_status))
        op = "reinstate_flow" if in_flow == "revoked" else "revoke_flow"
        label = "Reinstate in flow" if in_flow == "revoked" else "Revoke in flow"
        check = valid.get(aztp_id, {"valid": False, "reason": "unknown"})
        rows.append(
            [
                link(doc["name"], url("identity", id=aztp_id)),
                f"<code>{e(aztp_id)}</code>",
                _status(doc["status"]),
                _status(in_flow)
                + (
                    f" <span class='muted'>{e(member.get('revocationReason'))}</span>"
                    if in_flow == "revoked"
                    else ""
                ),
                badge("valid", "ok") if check["valid"] else badge(check["reason"], "bad"),
                link(
                    label,
                    url("confirm", op=op, aztpId=aztp_id, flowId=flow_id, back=here),
                    "button",
                ),
            ]
        )
    edges, link_rows = [], []
    for doc in authority.list_links(p):
        if (
            doc["sourceIdentity"] in members
            and doc["targetIdentity"] in members
            and _in_flow(doc, flow_id)
        ):
            edges.append(
                Edge(doc["sourceIdentity"], doc["targetIdentity"], doc["relationshipType"])
            )
            link_rows.append(_link_row(doc, names, here))
    for doc in authority.list_link_removals(p):
        if (
            doc["sourceIdentity"] in members
            and doc["targetIdentity"] in members
            and _in_flow(doc, flow_id)
        ):
            link_rows.append(_link_row(doc, names, here, removed=True))
            edges.append(
                Edge(
                    doc["sourceIdentity"],
                    doc["targetIdentity"],
                    doc["relationshipType"],
                    active=False,
                )
            )
    body = (
        f"<p>{badge(health['status'], _HEALTH[health['status']])} "
        f"{e(health['valid'])} of {e(health['total'])} members valid in the flow "
        f"({e(health['securityScore'])} %) · {e(flow['discoverable'])} · "
        f'<a href="{e(url("decisions", flow=flow_id))}">decisions in this flow</a></p>'
        "<h2>Who may call what</h2>"
        + (flow_graph(nodes, edges) if nodes else '<p class="muted">No members.</p>')
        + "<h2>Members</h2>"
        + table(
            ["Name", "AZTP ID", "Status", "In this flow", "Check", ""], rows, empty="No members."
        )
        + "<h2>Links</h2>"
        + table(
            ["Source", "Target", "Type", "Scope", ""], link_rows, empty="No links between members."
        )
    )
    return f"Flow {flow['name']}", body


def _link_row(
    doc: Mapping[str, Any], names: Names, back: str, *, removed: bool = False
) -> list[str]:
    """A link's row with its action: unlink, or restore one an operator removed."""
    name = names.identity

    op, label = ("restore_link", "Restore") if removed else ("unlink", "Unlink")
    query = {
        "source": doc["sourceIdentity"],
        "target": doc["targetIdentity"],
        "relationshipType": doc["relationshipType"],
        "back": back,
    }
    scope = e(doc["scope"])
    if removed:
        scope += " " + badge("unlinked by operator", "muted")
    return [
        link(name(doc["sourceIdentity"]), url("identity", id=doc["sourceIdentity"])),
        link(name(doc["targetIdentity"]), url("identity", id=doc["targetIdentity"])),
        e(doc["relationshipType"]),
        scope,
        link(label, url("confirm", op=op, **query), "button"),
    ]


# ------------------------------------------------------------------------------ identities


def identities_page(authority: Authority, p: Principal, contains: str) -> str:
    found, total = find_identities(authority, p, contains, limit=_PAGE)
    rows = [
        [
            link(d["name"], url("identity", id=d["aztpId"])),
            f"<code>{e(d['aztpId'])}</code>",
            _status(d["status"]),
            e(d["identityType"]),
            e(d["createdAt"]),
        ]
        for d in found
    ]
    search = (
        f'<form method="get" action="{e(url("identities"))}" class="filters">'
        f'<label>Name contains <input name="q" value="{e(contains)}"></label>'
        "<button type='submit'>Search</button></form>"
    )
    more = (
        f'<p class="muted">Showing {len(found)} of {total} (by name): narrow the search.</p>'
        if total > len(found)
        else ""
    )
    return (
        search
        + more
        + table(["Name", "AZTP ID", "Status", "Type", "Created"], rows, empty="No identities.")
    )


def identity_page(authority: Authority, p: Principal, aztp_id: str) -> tuple[str, str]:
    doc = authority.get_identity(p, aztp_id)
    here = url("identity", id=aztp_id)
    names = Names(authority, p)
    if doc["status"] == "active":
        action = link(
            "Revoke everywhere",
            url("confirm", op="revoke", aztpId=aztp_id, back=here),
            "button danger",
        )
    else:
        action = link("Reissue", url("confirm", op="reissue", aztpId=aztp_id, back=here), "button")
    facts = table(
        ["AZTP ID", "Status", "Type", "Trust domain", "Environment", "Updated"],
        [
            [
                f"<code>{e(aztp_id)}</code>",
                _status(doc["status"])
                + (
                    f" <span class='muted'>{e(doc.get('revocationReason'))}</span>"
                    if doc["status"] != "active"
                    else ""
                ),
                e(doc["identityType"]),
                e(doc["trustDomain"]),
                e(doc["environment"]),
                e(doc["updatedAt"]),
            ]
        ],
        empty="",
    )
    creds = table(
        ["Serial", "Kind", "Generation", "Issued", "Expires"],
        [
            [
                f"<code>{e(c['serial'])}</code>",
                e(c["kind"]),
                e(c["generation"]),
                e(c["issuedAt"]),
                e(c["notAfter"]),
            ]
            for c in credentials_of(authority, p, aztp_id)
        ],
        empty="No credentials issued.",
    )
    attached = authority.get_policies(p, aztp_id)
    policies = table(
        ["Code", "Name", ""],
        [
            [
                f"<code>{e(pol['code'])}</code>",
                e(pol["policyName"]),
                link(
                    "Detach",
                    url("confirm", op="detach", aztpId=aztp_id, code=pol["code"], back=here),
                    "button",
                ),
            ]
            for pol in attached
        ],
        empty="No policies attached: the link alone authorizes.",
    )
    codes = {pol["code"] for pol in attached}
    options = "".join(
        f'<option value="{e(pol["code"])}">{e(pol["policyName"])} ({e(pol["code"])})</option>'
        for pol in authority.list_policies(p)
        if pol["code"] not in codes
    )
    attach = (
        f'<form method="get" action="{e(url("confirm"))}" class="inline">'
        '<input type="hidden" name="op" value="attach">'
        f'<input type="hidden" name="aztpId" value="{e(aztp_id)}">'
        f'<input type="hidden" name="back" value="{e(here)}">'
        f'<select name="code" aria-label="policy">{options}</select>'
        "<button type='submit'>Attach…</button></form>"
        if options
        else ""
    )
    links = table(
        ["Source", "Target", "Type", "Scope", ""],
        [_link_row(d, names, here) for d in authority.list_links(p, aztp_id)],
        empty="No links.",
    )
    flows = [
        link(f["name"], url("flow", id=f["_id"]))
        for f in authority.list_flows(p)
        if any(m["aztpId"] == aztp_id for m in f["identities"])
    ]
    recent = [
        entry
        for entry in authority.audit_entries(p, limit=500, action=DECISION)
        if aztp_id in (entry.subject, entry.data.get("tool"))
    ][-20:]
    body = (
        f"<p>{action}</p>{facts}"
        f"<h2>Flows</h2><p>{', '.join(flows) or '<span class=muted>none</span>'}</p>"
        f"<h2>Credentials</h2>{creds}"
        f"<h2>Policies</h2>{policies}{attach}"
        f"<h2>Links</h2>{links}"
        f"<h2>Recent decisions</h2>{_decision_table(list(reversed(recent)), names)}"
    )
    return f"Identity {doc['name']}", body


# ------------------------------------------------------------------------------- decisions


def decision_matches(
    entry: AuditEntry, names: Names, flow: str, agent: str, tool: str, denied: bool
) -> bool:
    """Whether a decision entry is shown: in a flow the principal sees, and the filters."""
    data = entry.data
    flow_id = str(data.get("flowId") or "")
    if not names.visible(flow_id):
        return False  # another user's private flow (or one deleted since): never shown
    if flow and flow_id != flow:
        return False
    if denied and data.get("allowed"):
        return False
    for wanted, aztp_id in ((agent, entry.subject), (tool, data.get("tool"))):
        if wanted and wanted not in (aztp_id, names.identity(aztp_id)):
            return False
    return True


def decision_event(entry: AuditEntry, names: Names) -> dict[str, Any]:
    """A decision as the live view shows it (names resolved; the explanation's URL)."""
    data = entry.data
    allowed = bool(data.get("allowed"))
    flow_id = data.get("flowId")
    explain = None
    if not allowed and entry.subject and data.get("tool") and flow_id:
        explain = url(
            "explain",
            agent=entry.subject,
            tool=data["tool"],
            flow=flow_id,
            toolName=data.get("toolName"),
        )
    return {
        "seq": entry.seq,
        "ts": entry.ts,
        "allowed": allowed,
        "enforced": data.get("enforced", True),
        "reason": data.get("reason"),
        "agent": entry.subject,
        "agentName": names.identity(entry.subject),
        "tool": data.get("tool"),
        "toolName": data.get("toolName") or names.identity(data.get("tool")),
        "flow": flow_id,
        "flowName": names.flow(flow_id),
        "revision": data.get("revision"),
        "explain": explain,
    }


def decision_events(
    entries: list[AuditEntry], names: Names, flow: str, agent: str, tool: str, denied: bool
) -> list[dict[str, Any]]:
    """The live view's events for new decision entries (blocking: names are looked up)."""
    return [
        decision_event(x, names)
        for x in entries
        if decision_matches(x, names, flow, agent, tool, denied)
    ]


def _decision_row(ev: Mapping[str, Any]) -> list[str]:
    verdict = badge("allowed", "ok") if ev["allowed"] else badge("denied", "bad")
    return [
        e(ev["ts"]),
        verdict,
        e(ev["reason"]),
        e(ev["agentName"]),
        e(ev["toolName"]),
        e(ev["flowName"]),
        e(ev["revision"]),
        link("why?", ev["explain"]) if ev["explain"] else "",
    ]


_DECISION_HEADERS = [
    "Time",
    "Verdict",
    "Reason",
    "Agent",
    "Tool",
    "Flow",
    "Revision",
    "",
]


def _decision_table(entries: list[AuditEntry], names: Names) -> str:
    events = [decision_event(x, names) for x in entries if names.visible(x.data.get("flowId"))]
    return table(_DECISION_HEADERS, [_decision_row(ev) for ev in events], empty="No decisions yet.")


def decisions_page(
    authority: Authority, p: Principal, flow: str, agent: str, tool: str, denied: bool
) -> str:
    names = Names(authority, p)
    head = audit_head(authority, p)
    shown = [
        decision_event(x, names)
        for x in authority.audit_entries(p, limit=500, action=DECISION)
        if decision_matches(x, names, flow, agent, tool, denied)
    ][-50:]
    shown.reverse()
    options = '<option value="">all flows</option>' + "".join(
        f'<option value="{e(f["_id"])}"{" selected" if f["_id"] == flow else ""}>'
        f"{e(f['name'])}</option>"
        for f in authority.list_flows(p)
    )
    filters = (
        f'<form method="get" action="{e(url("decisions"))}" class="filters">'
        f'<label>Flow <select name="flow">{options}</select></label>'
        f'<label>Agent <input name="agent" value="{e(agent)}" placeholder="name or AZTP ID"></label>'
        f'<label>Tool <input name="tool" value="{e(tool)}" placeholder="name or AZTP ID"></label>'
        f'<label><input type="checkbox" name="denied" value="1"{" checked" if denied else ""}> denied only</label>'
        "<button type='submit'>Filter</button></form>"
    )
    stream = url(
        "decisions/stream",
        flow=flow,
        agent=agent,
        tool=tool,
        denied="1" if denied else None,
        after=head,
    )
    rows = "".join(
        "<tr>" + "".join(f"<td>{c}</td>" for c in _decision_row(ev)) + "</tr>" for ev in shown
    )
    head_html = "".join(f"<th>{e(h)}</th>" for h in _DECISION_HEADERS)
    return (
        filters
        + '<p class="muted"><span id="live-status" data-state="connecting">connecting…</span> '
        "New decisions appear at the top as they are taken.</p>"
        + f'<table id="decisions" data-stream="{e(stream)}"><thead><tr>{head_html}</tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def explain_page(
    authority: Authority, p: Principal, agent: str, tool: str, flow: str, tool_name: str | None
) -> str:
    names = Names(authority, p)
    if not names.visible(flow):
        raise NotFoundError(f"identity flow {flow!r} not found")
    data = authority.explain(p, agent, tool, flow, tool_name=tool_name or None)
    verdict = badge("allowed", "ok") if data["allowed"] else badge("denied", "bad")
    checks = table(
        ["Check", "Result", "Reason", "Message", "Fix"],
        [
            [
                e(c["check"]),
                badge(c["status"], {"pass": "ok", "fail": "bad"}.get(c["status"], "muted")),
                e(c["reason"]),
                e(c["message"]),
                f"<code>{e(c['fix'])}</code>" if c.get("fix") else "",
            ]
            for c in data["checks"]
        ],
        empty="",
    )
    statements = table(
        ["Policy", "Statement", "Effect", "Actions", "Resources", "Attached to"],
        [
            [
                e(s["policyName"] or s["policyCode"] or "(unnamed)"),
                e(f"#{s['index']} {s['sid'] or ''}"),
                e(s["effect"]),
                e(", ".join(s["actions"])),
                e(", ".join(s["resources"]) or "*"),
                e(names.identity(s["attachedTo"])),
            ]
            for s in data["statements"]
        ],
        empty="No policy statement decided this call.",
    )
    return (
        f"<p>{verdict} <strong>{e(data['reason'])}</strong>: {e(data['detail'])}</p>"
        f"<p>Agent {e(names.identity(agent))} → tool {e(data.get('toolName') or names.identity(tool))} "
        f"in flow {e(names.flow(flow))} · state revision {e(data['revision'])} · "
        f"link scope {e(data['linkScope'] or 'none')}</p>"
        "<p class='muted'>This is the decision as the current state gives it; the decision "
        "recorded in the audit log was taken on the revision it shows.</p>"
        f"<h2>Checks, in order</h2>{checks}<h2>Policy statements</h2>{statements}"
    )


# ----------------------------------------------------------------------------------- audit


def actor_ids(authority: Authority, p: Principal, actor: str) -> set[str] | None:
    """The user ids an actor filter (a user's name or id) stands for; None: no filter."""
    if not actor:
        return None
    return {u["id"] for u in authority.list_users(p.org_id) if actor in (u["id"], u["name"])}


def audit_filter(entry: AuditEntry, actors: set[str] | None, subject: str) -> bool:
    return (actors is None or entry.actor in actors) and (
        not subject or subject in (entry.subject or "")
    )


def audit_page(
    authority: Authority, p: Principal, action: str, actor: str, subject: str, limit: int
) -> str:
    report = authority.verify_audit(p).to_dict()
    if report["ok"]:
        status = badge("chain intact", "ok") + f" {e(report['entries'])} entries verified"
    else:
        status = badge("chain broken", "bad") + f" {e(report['problem'])}"
    actors = actor_ids(authority, p, actor)
    entries = [
        x
        for x in authority.audit_entries(p, limit=limit, action=action or None)
        if audit_filter(x, actors, subject)
    ]
    entries.reverse()
    # the acting user by name (the organization's own users only: p.org_id)
    users = {u["id"]: u["name"] for u in authority.list_users(p.org_id)}
    names = Names(authority, p)
    rows = [
        [
            e(x.seq) + (f".{e(x.index)}" if x.index is not None else ""),
            e(x.ts),
            e(x.action),
            f'<span title="{e(x.actor)}">{e(users.get(x.actor or "", x.actor))}</span>',
            f'<span title="{e(x.subject)}">{e(_subject(names, x.subject))}</span>',
            f"<code>{e(_short(x.data))}</code>",
            f"<code title='{e(x.hash)}'>{e(x.hash[:12])}…</code>",
        ]
        for x in entries
    ]
    filters = (
        f'<form method="get" action="{e(url("audit"))}" class="filters">'
        f'<label>Action <input name="action" value="{e(action)}" placeholder="e.g. flow.* or decision.*"></label>'
        f'<label>Actor <input name="actor" value="{e(actor)}" placeholder="user name or id"></label>'
        f'<label>Subject <input name="subject" value="{e(subject)}" placeholder="contains"></label>'
        f'<label>Newest <input name="limit" type="number" min="1" max="100000" value="{e(limit)}"></label>'
        "<button type='submit'>Filter</button> "
        + link(
            "Export JSON lines",
            url("audit/export", action=action, actor=actor, subject=subject),
            "button",
        )
        + "</form>"
    )
    return f"<p>{status}</p>{filters}" + table(
        ["Seq", "Time", "Action", "Actor", "Subject", "Data", "Hash"], rows, empty="No entries."
    )


def _subject(names: Names, subject: str | None) -> str:
    """An audit entry's subject by name: an identity's, a flow's, else as recorded."""
    if not subject:
        return ""
    if subject.startswith("aztp://"):
        return names.identity(subject)
    return names.flow_name(subject) or subject


def _short(data: Mapping[str, Any]) -> str:
    import json

    text = json.dumps(data, sort_keys=True, default=str)
    return text if len(text) <= 160 else text[:159] + "…"
