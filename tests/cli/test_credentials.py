"""``aztp-agents bundle`` and ``svid jwt``."""

from __future__ import annotations

import json

from tests.support.cli import Run, jwt_part


def test_bundle(run: Run, crew: dict[str, str]) -> None:
    jwks = json.loads(run("bundle").stdout)
    uses = {k["use"] for k in jwks["keys"]}
    assert uses == {"x509-svid", "jwt-svid"} and "spiffe_sequence" in jwks
    assert json.loads(run("bundle", "--json").stdout) == jwks

    run("identity", "issue", "other", "--trust-domain", "second.example")
    run.fails("bundle", code=2, contains="--trust-domain")
    assert json.loads(run("bundle", "--trust-domain", "aztp.local").stdout) == jwks
    assert json.loads(run("bundle", "--trust-domain", "second.example").stdout)["keys"]
    run.fails("bundle", "--trust-domain", "unknown.example", code=3)


def test_svid_jwt(run: Run, crew: dict[str, str]) -> None:
    result = run("svid", "jwt", "researcher", "--audience", "https://api.example")
    token = result.stdout.strip()
    assert result.stdout.count("\n") == 1 and token.count(".") == 2
    header, claims = jwt_part(token, 0), jwt_part(token, 1)
    assert header["alg"] == "ES256"
    assert claims["sub"] == "spiffe://aztp.local/workload/production/node/researcher"
    assert claims["aud"] in ("https://api.example", ["https://api.example"])
    assert claims["exp"] - claims["iat"] == 300

    answer = run.json(
        "svid", "jwt", crew["agent"], "--audience", "a", "--audience", "b", "--ttl", "60"
    )
    assert answer["audience"] == ["a", "b"] and jwt_part(answer["token"], 1)["aud"] == ["a", "b"]

    run.fails("svid", "jwt", "researcher", code=2, contains="--audience")
    run.fails("svid", "jwt", "researcher", "--audience", "a", "--ttl", "0", code=2)
    run("identity", "revoke", "researcher")
    run.fails("svid", "jwt", "researcher", "--audience", "a", code=4, contains="revoked")
