"""JWT-SVIDs: fetch one for an audience, and validate it offline against the trust bundle.

The agent asks the authority for a JWT-SVID addressed to one audience (a tool server, an
API). The receiving service needs no call to the authority: it validates the token against
the organization's SPIFFE trust bundle (JWKS), which it can fetch once and cache —
``TrustBundle.from_jwks`` + ``validate_jwt_svid``. Then what a validator must reject: the
wrong audience, a tampered payload, an expired token, ``alg: none``, and a token signed by
another organization's CA.

Offline: the authority is embedded (SQLite in a fresh temporary folder, or ``$AZTP_HOME``).

Run: .venv/bin/python examples/jwt_svid.py
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import tempfile

from aztp_agents import Aztp
from aztp_agents.credentials import CertificateAuthority, TrustBundle, validate_jwt_svid
from aztp_agents.errors import SvidValidationError

AUDIENCE = "https://tools.astha.ai/search"


def b64(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def encode(obj: dict) -> str:
    return (
        base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode())
        .rstrip(b"=")
        .decode()
    )


async def main() -> None:
    home = os.environ.get("AZTP_HOME") or tempfile.mkdtemp(prefix="aztp-example-")
    client = Aztp(home=home, trust_domain="astha.ai")
    agent = await client.secure_connect({}, "research-agent")
    aztp_id = agent.identity.aztp_id

    # The agent side: a JWT-SVID for one audience (ES256, 5 minutes by default).
    token = await client.fetch_jwt_svid(aztp_id, audience=AUDIENCE)
    header, claims, _ = token.split(".")
    print("header:", b64(header))
    print(
        "claims:",
        {k: v for k, v in b64(claims).items() if k in ("sub", "aud")},
        f"exp-iat={b64(claims)['exp'] - b64(claims)['iat']} s",
    )

    # The service side: the organization's trust bundle, fetched once (GET /.well-known/spiffe-bundle
    # from a server), then every token is checked offline.
    jwks = (await client.get_trust_bundle())["astha.ai"]
    bundle = TrustBundle.from_jwks("astha.ai", jwks)
    print("bundle:", bundle)
    svid = validate_jwt_svid(token, bundle, AUDIENCE)
    print(
        f"valid JWT-SVID for {svid.spiffe_id}, audience {svid.audience}, expires {svid.expiry:%H:%M:%S} UTC"
    )

    def attempt(
        label: str,
        candidate: str,
        *,
        audience: str = AUDIENCE,
        now: dt.datetime | None = None,
        against: TrustBundle = bundle,
    ) -> None:
        try:
            validate_jwt_svid(candidate, against, audience, now=now)
            print(f"   {label:<34} ACCEPTED (wrong!)")
        except SvidValidationError as exc:
            print(f"   {label:<34} rejected: {exc.reason} ({exc})")

    print("\nWhat the validator rejects:")
    attempt("another audience", token, audience="https://tools.astha.ai/email")
    forged = encode({**b64(claims), "sub": "spiffe://astha.ai/workload/production/node/admin"})
    attempt("a tampered payload (sub changed)", f"{header}.{forged}.{token.split('.')[2]}")
    attempt(
        "the same token ten minutes later",
        token,
        now=dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=10),
    )
    attempt("alg: none", f"{encode({'alg': 'none', 'typ': 'JWT'})}.{claims}.")
    other_ca = CertificateAuthority.generate("astha.ai")  # someone else's CA claiming the domain
    foreign = other_ca.mint_jwt_svid(svid.spiffe_id, AUDIENCE)
    attempt("signed by another CA", foreign)

    # Offline validation cannot see revocations: the token stays valid until it expires.
    # Enforcement points of aztp-agents consult live state instead (docs/security.md).
    await client.revoke_identity(aztp_id, reason="demo")
    still = validate_jwt_svid(token, bundle, AUDIENCE).spiffe_id == svid.spiffe_id
    live = await client.verify_identity_by_aztp_id(aztp_id)
    print(
        f"\nafter revoking the agent: offline validation still passes: {still}; live verification: {live}"
    )


if __name__ == "__main__":
    asyncio.run(main())
