"""The flow graph (pure SVG): callers left, callees right, one arrow per link; revoked
identities and links through them marked; removed links dashed; every text escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from aztp_agents.server.console.graph import Edge, Node, flow_graph

SVG = "{http://www.w3.org/2000/svg}"


def test_the_graph_marks_revoked_and_unlinked_and_escapes_names() -> None:
    nodes = [
        Node("a", "agent", "revoked_in_flow"),
        Node("t1", "lookup", "active"),
        Node("t2", "<b>&shell</b>", "active"),
        Node("t3", "alone", "active"),
    ]
    edges = [
        Edge("a", "t1", "tool_access"),
        Edge("a", "t2", "tool_access", active=False),
        Edge("a", "elsewhere", "tool_access"),  # not a member: not drawn
    ]
    svg = flow_graph(nodes, edges)
    root = ET.fromstring(svg)  # well-formed: names cannot break out of their text
    paths = {
        (p.get("data-source"), p.get("data-target")): p.get("class")
        for p in root.iter(f"{SVG}path")
        if p.get("data-source")
    }
    assert paths == {("a", "t1"): "edge dead", ("a", "t2"): "edge removed"}
    groups = {g.get("data-aztp-id"): g for g in root.iter(f"{SVG}g")}
    assert groups["a"].get("class") == "node revoked_in_flow"
    texts = ["".join(g.itertext()) for g in groups.values()]
    assert any("agent (revoked in flow)" in t for t in texts)
    assert any("<b>&shell</b>" in t for t in texts)  # shown as text, not markup
    assert "<b>" not in svg
    rects = {g.get("data-aztp-id"): g.find(f"{SVG}rect") for g in groups.values()}
    assert rects["a"].get("x") == "10" and rects["t1"].get("x") == rects["t3"].get("x") == "440"
