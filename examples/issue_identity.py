"""Issue an identity for an agent (AZTP docs: "How to issue an identity with aztp-client").

The documentation's four steps, on the embedded authority: initialize the client, take your
agent object, call ``secure_connect`` with a name, and receive a cryptographically signed
identity — here a real X.509-SVID, which we then check offline against the trust bundle the
way any SPIFFE verifier would.

Offline: the authority is embedded (SQLite in a fresh temporary folder, or ``$AZTP_HOME``).

Run: .venv/bin/python examples/issue_identity.py
"""

from __future__ import annotations

import asyncio
import os
import tempfile

from cryptography import x509

from aztp_agents import Aztp
from aztp_agents.credentials import TrustBundle, load_private_key, validate_x509_svid


async def main() -> None:
    # 1-2. Initialize the client. With no api_key/base_url it is the embedded authority;
    #      Aztp(api_key=..., base_url=...) talks to an `aztp-agents serve` server instead.
    home = os.environ.get("AZTP_HOME") or tempfile.mkdtemp(prefix="aztp-example-")
    client = Aztp(home=home, trust_domain="astha.ai")

    # 3. Your agent object (any object: a CrewAI agent, a LangChain runnable, a dict).
    agent = {"role": "researcher"}

    # 4. Issue an identity for it.
    secured_agent = await client.secure_connect(agent, "my-agent")
    identity = secured_agent.identity
    print("AZTP ID:", identity.aztp_id)
    print("SPIFFE ID:", identity.spiffe_id)
    print("valid:", identity.valid, "| status:", identity.status, "| expires:", identity.expires_at)

    # The credential is real: a short-lived X.509-SVID with the SPIFFE ID as its only URI SAN.
    cert = x509.load_pem_x509_certificate(identity.certificate.encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    print("certificate URI SAN:", san.get_values_for_type(x509.UniformResourceIdentifier))
    print("certificate serial:", format(cert.serial_number, "x"))

    # Anyone with the organization's trust bundle (JWKS) can verify it, offline; with the
    # private key, we also check that the key is the certificate's.
    jwks = (await client.get_trust_bundle())["astha.ai"]
    bundle = TrustBundle.from_jwks("astha.ai", jwks)
    key = load_private_key(identity.private_key)
    spiffe_id = validate_x509_svid(identity.certificate, bundle, private_key=key)
    print("X.509-SVID verifies against the trust bundle:", spiffe_id == identity.spiffe_id)

    # The wrapped agent is still your agent: attributes fall through to it.
    print("the secured agent wraps:", secured_agent.get("role"))


if __name__ == "__main__":
    asyncio.run(main())
