"""``aztp-agents bundle`` and ``svid``: the trust bundle and credentials (SVIDs) to print."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import NotFoundError
from ._app import app, sub_app
from ._client import run
from ._errors import UsageProblem
from ._options import IdentityArg, JsonOpt
from ._output import print_json, wants_json
from ._resolve import aztp_id

if TYPE_CHECKING:
    from ..client import Aztp

svid_app = sub_app("svid", "Credentials (SVIDs) for an identity.")


@app.command("bundle")
def bundle(
    ctx: typer.Context,
    trust_domain: Annotated[
        str | None, typer.Option("--trust-domain", help="Which trust domain (needed if several).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the SPIFFE trust bundle (JWKS) of a trust domain."""
    # A bundle is JSON either way: --json is accepted for symmetry with the other commands.
    bundles = run(ctx, lambda c: c.get_trust_bundle(trust_domain))
    if trust_domain:
        if trust_domain not in bundles:
            raise NotFoundError(f"trust domain {trust_domain!r} is not one of this organization's")
        print_json(bundles[trust_domain])
        return
    if len(bundles) == 1:
        print_json(next(iter(bundles.values())))
        return
    if not bundles:
        raise NotFoundError("this organization has no trust domain yet")
    raise UsageProblem(
        f"this organization has {len(bundles)} trust domains ({', '.join(sorted(bundles))}): "
        "choose one with --trust-domain"
    )


@svid_app.command("jwt")
def svid_jwt(
    ctx: typer.Context,
    identity: IdentityArg,
    audience: Annotated[list[str], typer.Option("--audience", help="Audience (repeatable).")],
    ttl: Annotated[int, typer.Option("--ttl", min=1, max=86400, help="Lifetime in seconds.")] = 300,
    as_json: JsonOpt = False,
) -> None:
    """Print a JWT-SVID for an identity (the token only)."""

    async def go(client: Aztp) -> tuple[str, str]:
        aztp = await aztp_id(client, identity)
        aud: str | list[str] = audience[0] if len(audience) == 1 else list(audience)
        return aztp, await client.fetch_jwt_svid(aztp, aud, ttl=ttl)

    aztp, token = run(ctx, go)
    if wants_json(ctx, as_json):
        print_json({"token": token, "aztpId": aztp, "audience": list(audience), "ttl": ttl})
    else:
        typer.echo(token)
