"""``aztp-agents org``, ``keys`` and ``user``: organizations, API keys and users of the
embedded store.

These commands manage the store itself, so they run on the host that holds it (``--home``),
never through a server; they reach the authority through
:func:`~aztp_agents.cli._client.embedded_authority` only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._app import sub_app
from ._client import embedded_authority
from ._options import JsonOpt, OrgOpt
from ._output import console, emit, fields, say, status_text, table

if TYPE_CHECKING:
    from ..authority import Authority, Principal

org_app = sub_app("org", "Organizations (tenants) of the embedded store.")
keys_app = sub_app("keys", "API keys of the embedded store (shown once, stored hashed).")
user_app = sub_app("user", "Users of an organization in the embedded store.")

KeyIdArg = Annotated[str, typer.Argument(metavar="KEY_ID", help="The key's id (see 'keys list').")]


def _org_principal(
    ctx: typer.Context, org: str | None, user: str | None, what: str
) -> tuple[Authority, Principal]:
    """The authority and the principal acting for ``--org``/``--user`` (default: the local one)."""
    authority, default = embedded_authority(ctx, what)
    if org is None and user is None:
        return authority, default
    org_id = default.org_id if org is None else authority.org_by_name(org)
    return authority, authority.principal_for(org_id, user)


def _show_new_key(ctx: typer.Context, as_json: bool, result: dict[str, Any]) -> None:
    """Print a result that holds a new API key, with the reminder that it is shown only once."""

    def human() -> None:
        console().print(fields(None, list(result.items())))
        typer.echo(
            "note: the API key is shown only this once; store it now (only its hash is kept).",
            err=True,
        )

    emit(ctx, as_json, result, human)


@org_app.command("create")
def org_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Organization name.")],
    trust_domain: Annotated[
        str, typer.Option("--trust-domain", help="Trust domain it owns (unique).")
    ],
    user: Annotated[str, typer.Option("--user", help="Name of its first user.")] = "admin",
    as_json: JsonOpt = False,
) -> None:
    """Create an organization with its own CA and a first user's API key."""
    authority, _ = embedded_authority(ctx, "org create")
    principal, key = authority.create_org(name, trust_domain, user_name=user)
    keys = authority.list_api_keys(principal.org_id)
    result = {
        "org": principal.org_name,
        "org_id": principal.org_id,
        "trust_domain": principal.default_trust_domain,
        "user": principal.user_name,
        "key_id": keys[0]["id"] if keys else None,
        "api_key": key,
    }
    _show_new_key(ctx, as_json, result)


@org_app.command("list")
def org_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List the organizations of the embedded store, their trust domains and users."""
    authority, _ = embedded_authority(ctx, "org list")
    orgs = authority.list_orgs()

    def human() -> None:
        console().print(
            table(
                f"{len(orgs)} organizations",
                ["name", "trust domains", "users", "created", "id"],
                [(o["name"], o["trustDomains"], o["users"], o["createdAt"], o["id"]) for o in orgs],
            )
        )

    emit(ctx, as_json, orgs, human)


@org_app.command("add-trust-domain")
def org_add_trust_domain(
    ctx: typer.Context,
    org: Annotated[str, typer.Argument(help="Organization name.")],
    trust_domain: Annotated[str, typer.Argument(help="Trust domain to assign to it.")],
    as_json: JsonOpt = False,
) -> None:
    """Assign another trust domain to an organization (its CA is made now). Organizations on a
    shared store issue identities only in trust domains assigned to them."""
    authority, _ = embedded_authority(ctx, "org add-trust-domain")
    result = {"org": org, **authority.add_trust_domain(authority.org_by_name(org), trust_domain)}
    emit(
        ctx,
        as_json,
        result,
        lambda: say(
            f"trust domain {result['trustDomain']} "
            + ("assigned to" if result["assigned"] else "already belongs to")
            + f" {org}"
        ),
    )


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    org: OrgOpt = None,
    user: Annotated[
        str | None, typer.Option("--user", help="User name (default: the organization's first).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key (shown once)."""
    authority, principal = _org_principal(ctx, org, user, "keys create")
    key_id, key = authority.create_api_key(principal.org_id, principal.user_id)
    result = {"api_key": key, "id": key_id, "org": principal.org_name, "user": principal.user_name}
    _show_new_key(ctx, as_json, result)


@keys_app.command("list")
def keys_list(ctx: typer.Context, org: OrgOpt = None, as_json: JsonOpt = False) -> None:
    """List API keys (prefixes only; the keys themselves are not stored)."""
    authority, principal = _org_principal(ctx, org, None, "keys list")
    keys = authority.list_api_keys(principal.org_id)

    def human() -> None:
        if not keys:
            say(
                f"no API keys in organization {principal.org_name}: create one with 'aztp-agents keys create'"
            )
            return
        console().print(
            table(
                f"API keys of {principal.org_name}",
                ["id", "prefix", "user", "created", "status"],
                [
                    (
                        k["id"],
                        k["prefix"],
                        k["userName"],
                        k["createdAt"],
                        status_text("revoked" if k.get("revokedAt") else "active"),
                    )
                    for k in keys
                ],
            )
        )

    emit(ctx, as_json, keys, human)


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context, key_id: KeyIdArg, org: OrgOpt = None, as_json: JsonOpt = False
) -> None:
    """Revoke an API key (refused at once)."""
    authority, principal = _org_principal(ctx, org, None, "keys revoke")
    authority.revoke_api_key(principal.org_id, key_id)
    result = {"id": key_id, "org": principal.org_name, "revoked": True}
    emit(ctx, as_json, result, lambda: say(f"revoked API key {key_id}", "red"))


@keys_app.command("rotate")
def keys_rotate(
    ctx: typer.Context, key_id: KeyIdArg, org: OrgOpt = None, as_json: JsonOpt = False
) -> None:
    """Replace an API key: a new key for the same user (shown once); the old one is revoked."""
    authority, principal = _org_principal(ctx, org, None, "keys rotate")
    new_id, key = authority.rotate_api_key(principal.org_id, key_id)  # one transaction
    result = {"api_key": key, "id": new_id, "org": principal.org_name, "revoked": key_id}
    _show_new_key(ctx, as_json, result)


@user_app.command("create")
def user_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="User name, unique in the organization.")],
    org: OrgOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a user (give it a key with 'keys create --user NAME')."""
    authority, principal = _org_principal(ctx, org, None, "user create")
    created = authority.create_user(principal.org_id, name)
    result = {"id": created.user_id, "user": created.user_name, "org": created.org_name}
    emit(
        ctx,
        as_json,
        result,
        lambda: say(
            f"created user {created.user_name} in {created.org_name}; key: aztp-agents keys create "
            f"--org {created.org_name} --user {created.user_name}",
            "green",
        ),
    )


@user_app.command("list")
def user_list(ctx: typer.Context, org: OrgOpt = None, as_json: JsonOpt = False) -> None:
    """List the users of an organization and how many active API keys each holds."""
    authority, principal = _org_principal(ctx, org, None, "user list")
    users = authority.list_users(principal.org_id)

    def human() -> None:
        console().print(
            table(
                f"users of {principal.org_name}",
                ["name", "active keys", "created", "id"],
                [(u["name"], u["activeKeys"], u["createdAt"], u["id"]) for u in users],
            )
        )

    emit(ctx, as_json, users, human)
