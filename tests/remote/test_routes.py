"""The remote route table against the wire models: every JSON body the client builds is one
the server's request model accepts, field for field (no server needed)."""

from __future__ import annotations

from typing import Any

import pytest

from aztp_agents.client._routes import _ISSUE_FIELDS
from aztp_agents.remote import ROUTES

AZTP = "aztp://a.test/workload/production/node/x"
SAMPLE: dict[str, Any] = {
    "aztp_id": AZTP,
    "source": AZTP,
    "target": AZTP,
    "parent_identity": AZTP,
    "flow_id": "0" * 24,
    "reason": "r",
    "policy_code": "policy:0650537f8614",
    "code": "policy:0650537f8614",
    "name": "n",
    "cert_pem": "-----BEGIN CERTIFICATE-----",
    "csr_pem": "-----BEGIN CERTIFICATE REQUEST-----",
    "audience": "aud",
    "ttl": 60,
    "relationship_type": "linked",
    "metadata": {"k": 1},
    "description": "d",
    "document": {"Statement": [{"Effect": "Allow", "Action": "tool:*"}]},
    "requested_resource": "r",
    "user_id": "u",
    "discoverable": "private",
    "tags": ["t"],
    "trust_domain": "a.test",
    "is_global": True,
    "environment": "production",
    "method": "node",
    "hostname": "h",
    "extra": {"k": "v"},
    "checkpoint": {"checkpoint": {"seq": 1}, "signature": "s", "public_key": "k"},
    "public_key": "-----BEGIN PUBLIC KEY-----",
    "declared": True,
    "agent": AZTP,
    "tool": AZTP,
    "tool_name": "search",
    "context": {"env": "prod"},
}
#: The keyword arguments of the routes whose request is built by hand.
BUILT = {
    "secure_connect": list(_ISSUE_FIELDS),
    "reissue_identity": ["aztp_id", "csr_pem"],
    "add_identity_to_flow": ["flow_id", "aztp_id"],
    "update_flow": ["flow_id", "name", "description", "discoverable", "tags", "metadata"],
}


@pytest.mark.parametrize(
    "op", sorted(op for op, route in ROUTES.items() if route.method not in ("GET", "DELETE"))
)
def test_every_body_is_its_wire_model(op: str) -> None:
    route = ROUTES[op]
    assert route.body_model is not None, f"{op}: no wire model for its body"
    names = BUILT.get(op) or [*route.fields, *(k for k in SAMPLE if "{" + k + "}" in route.path)]
    request = route.request(op, {k: SAMPLE[k] for k in names})
    assert request.body is not None
    unknown = set(request.body) - set(route.body_model.model_fields)
    assert not unknown, f"{op} sends fields its wire model ignores: {sorted(unknown)}"
    route.body_model.model_validate(request.body)
