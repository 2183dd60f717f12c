"""Explaining a tool-call decision: why it is (or would be) allowed or denied.

The checks themselves are pure (:func:`aztp_agents.decisions.explain.explain_tool_call`, over
the same decision state the decision is taken on); this component adds what the state does
not hold: which policy each attached statement comes from, whether an operator removed the
link, and the identities' names. A read: it writes nothing and is not audited (it decides
nothing; the decisions it explains are).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..decisions.explain import AttachedPolicy, explain_tool_call
from ..errors import ValidationError
from ..policy import parse_document
from ._context import SYMMETRIC, Component, Principal, need_aztp_id, need_str, opt_text

__all__ = ["Explanations"]


class Explanations(Component):
    """``explain``: every check of a tool-call decision, in order."""

    def explain(
        self,
        p: Principal,
        agent: str,
        tool: str,
        flow_id: str,
        tool_name: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Why a call of ``tool`` by ``agent`` in flow ``flow_id`` is allowed or denied now:
        the reason the decision gives, every check with pass/fail/skip and a fix, the link's
        scope, and the policy statement that decided (named by policy code and index)."""
        agent = str(need_aztp_id(agent, "agent"))
        tool = str(need_aztp_id(tool, "tool"))
        flow_id = need_str(flow_id, "flow_id", max_len=64)
        tool_name = opt_text(tool_name, "tool_name", max_len=256)
        if context is not None and not isinstance(context, Mapping):
            raise ValidationError('context must be a JSON object like {"env": "prod"}')
        snap = self.ctx.decisions.state(p.org_id)
        attached: list[AttachedPolicy] = []
        names: dict[str, str] = {}
        for subject in dict.fromkeys((agent, tool)):
            if subject not in snap.identities:
                continue  # unknown here: nothing attached, no name (the check says so)
            names[subject] = self.ctx.identities.get_identity(p, subject)["name"]
            for pol in self.ctx.policies.get_policies(p, subject):
                statements = parse_document(pol["policyStatement"]).statement
                attached.append(AttachedPolicy(pol["code"], pol["policyName"], subject, statements))
        removed = any(
            (r["sourceIdentity"], r["targetIdentity"]) == (agent, tool)
            or (
                r["relationshipType"] in SYMMETRIC
                and (r["sourceIdentity"], r["targetIdentity"]) == (tool, agent)
            )
            for r in self.ctx.links.list_link_removals(p, agent)
        )
        explanation = explain_tool_call(
            snap,
            flow_id=flow_id,
            agent=agent,
            tool=tool,
            tool_name=tool_name,
            context=context,
            user_id=p.user_id,
            attached=attached,
            link_removed=removed,
        )
        return {**explanation.to_dict(), "names": names}
