"""Seed 002 (issuing an identity): issuing and reading back an identity with its credential. Run
against the embedded authority.

How seed code is adapted to run here: see :mod:`tests.seeds`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from aztp_agents import Aztp
from tests.support.seeds import (
    run,
)

# =========================================================================================
# Seed 002: issuing an identity
# =========================================================================================


def test_seed002_issue_identity(client: Aztp, capsys: pytest.CaptureFixture[str]) -> None:
    async def main() -> Any:
        # 3. Create your agent object (replace {} with your actual agent)
        agent = {}
        # 4. Issue an identity for your agent
        secured_agent = await client.secure_connect(agent, "my-agent")
        print("AZTP ID:", secured_agent.identity.aztp_id)
        return secured_agent

    secured_agent = run(main())
    assert capsys.readouterr().out == "AZTP ID: aztp://astha.ai/workload/production/node/my-agent\n"
    identity = secured_agent.identity
    assert identity.valid is True and identity.status == "active"
    assert identity.spiffe_id == "spiffe://astha.ai/workload/production/node/my-agent"

    # Real credentials, not placeholders.
    cert = x509.load_pem_x509_certificate(identity.certificate.encode())
    ca_cert = x509.load_pem_x509_certificate(identity.ca_certificate.encode())
    key = serialization.load_pem_private_key(identity.private_key.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    cert.verify_directly_issued_by(ca_cert)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [identity.spiffe_id]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert 0 < (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() <= 3600 + 300
    # The private key is never written to the store's audit log.
    authority = client.backend.authority  # type: ignore[attr-defined]
    entries = authority.audit_entries(client.backend.principal)  # type: ignore[attr-defined]
    body = identity.private_key.split("-----")[2].strip().splitlines()[0]
    assert all(body not in json.dumps(e.model_dump()) for e in entries)
    # The wrapped agent's attributes fall through.
    assert repr(secured_agent).startswith("SecuredAgent(aztp_id='aztp://astha.ai/")
