"""SPIFFE IDs and trust domains as credential arguments.

The rules themselves belong to :mod:`aztp_agents.ids`; this module only turns what a caller
passed (a string or an ``ids`` value) into the ``ids`` value, raising
:class:`~aztp_agents.errors.CredentialError` the way the credential API always has.
"""

from __future__ import annotations

from aztp_agents.errors import CredentialError, InvalidIdError
from aztp_agents.ids import SpiffeId, TrustDomain, parse_spiffe_id

__all__ = ["spiffe_id_of", "trust_domain_name"]


def spiffe_id_of(spiffe_id: SpiffeId | str) -> SpiffeId:
    """``spiffe_id`` as a :class:`SpiffeId`; a string is parsed strictly."""
    if isinstance(spiffe_id, SpiffeId):
        return spiffe_id
    try:
        return parse_spiffe_id(spiffe_id)
    except InvalidIdError as exc:
        raise CredentialError(f"not a SPIFFE ID: {exc}") from exc


def trust_domain_name(trust_domain: TrustDomain | str) -> str:
    """The bare name of a trust domain (``example.org``); ``spiffe://`` forms are refused."""
    if isinstance(trust_domain, TrustDomain):
        return trust_domain.name
    try:
        return TrustDomain(trust_domain).name
    except InvalidIdError as exc:
        raise CredentialError(f"invalid trust domain: {trust_domain!r}") from exc
