"""The console's actions: each one confirmed on a page of its own, then posted (with the
session's CSRF token) and carried out through the very authority operation the API route
calls, as the signed-in principal, so it is scoped and audited (``actor``: the acting user)
exactly as the same call through the API would be.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ...authority import Authority, Principal
from ...errors import ValidationError

__all__ = ["ACTIONS", "Action"]


@dataclass(frozen=True)
class Action:
    title: str
    #: the form fields it needs (besides the CSRF token and an optional reason)
    fields: tuple[str, ...]
    #: what the confirmation page says will happen
    warning: str
    #: whether it asks for a reason (recorded in the audit log)
    reason: bool
    run: Callable[[Authority, Principal, Mapping[str, str]], Any]
    done: str
    danger: bool = False


def _reason(form: Mapping[str, str]) -> str:
    return form.get("reason", "").strip() or "revoked from the console"


ACTIONS: dict[str, Action] = {
    "revoke_flow": Action(
        "Revoke in this flow",
        ("aztpId", "flowId"),
        "The identity becomes invalid in this flow only: every tool call it takes part in "
        "here is denied from the next decision on. It stays valid globally and in other flows.",
        True,
        lambda a, p, f: a.revoke_flow_identity(p, f["aztpId"], f["flowId"], _reason(f)),
        "Identity revoked in the flow",
        danger=True,
    ),
    "reinstate_flow": Action(
        "Reinstate in this flow",
        ("aztpId", "flowId"),
        "The flow revocation is lifted: the identity is valid in this flow again (if it is "
        "valid globally).",
        False,
        lambda a, p, f: a.reinstate_flow_identity(p, f["aztpId"], f["flowId"]),
        "Identity reinstated in the flow",
    ),
    "revoke": Action(
        "Revoke everywhere",
        ("aztpId",),
        "The identity becomes invalid in every flow at once; its credentials stay dead even "
        "after a reissue.",
        True,
        lambda a, p, f: a.revoke_identity(p, f["aztpId"], _reason(f)),
        "Identity revoked",
        danger=True,
    ),
    "reissue": Action(
        "Reissue",
        ("aztpId",),
        "The identity becomes valid again with a new credential; credentials issued before "
        "the revocation stay dead.",
        False,
        lambda a, p, f: a.reissue_identity(p, f["aztpId"], csr_pem=None, make_key=False),
        "Identity reissued",
    ),
    "unlink": Action(
        "Unlink",
        ("source", "target", "relationshipType"),
        "The link is removed and recorded as operator intent: enrollment will not create it "
        "again until it is restored.",
        True,
        lambda a, p, f: a.unlink_identities(
            p, f["source"], f["target"], f["relationshipType"], _reason(f)
        ),
        "Link removed",
        danger=True,
    ),
    "restore_link": Action(
        "Restore link",
        ("source", "target", "relationshipType"),
        "The operator's removal is undone: the link authorizes again where it did before.",
        False,
        lambda a, p, f: a.restore_link(p, f["source"], f["target"], f["relationshipType"]),
        "Link restored",
    ),
    "attach": Action(
        "Attach policy",
        ("aztpId", "code"),
        "The policy takes part in every decision about this identity from the next one on "
        "(with a policy attached, a call needs a matching Allow).",
        False,
        lambda a, p, f: a.attach_policy(p, f["aztpId"], f["code"]),
        "Policy attached",
    ),
    "detach": Action(
        "Detach policy",
        ("aztpId", "code"),
        "The policy no longer takes part in decisions about this identity.",
        False,
        lambda a, p, f: a.detach_policy(p, f["aztpId"], f["code"]),
        "Policy detached",
    ),
}


def fields_of(action: Action, given: Mapping[str, str]) -> dict[str, str]:
    """The action's fields from a form or query; a missing one is a ValidationError."""
    out = {}
    for name in action.fields:
        value = given.get(name, "").strip()
        if not value:
            raise ValidationError(f"{name} is missing")
        out[name] = value
    if action.reason:
        out["reason"] = given.get("reason", "")[:500]
    return out
