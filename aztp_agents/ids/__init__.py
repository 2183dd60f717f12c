"""AZTP IDs, SPIFFE IDs, trust domains and identity names.

An AZTP ID has the form ``aztp://{trust_domain}/workload/{environment}/{method}/{name}`` and maps
one-to-one to the SPIFFE ID with the same trust domain and path
(``spiffe://{trust_domain}/workload/...``).

Rules (SPIFFE-ID.md, applied as strictly as go-spiffe):

* the scheme is exactly ``spiffe`` (or ``aztp``), lower case, followed by ``://``;
* the trust domain is non-empty, at most 255 bytes of ``[a-z0-9._-]`` (no upper case, port,
  user info, IP-literal brackets or percent-encoding);
* the path is empty or ``/seg/seg...`` with segments of ``[A-Za-z0-9._-]``; no empty, ``.`` or
  ``..`` segments, no trailing ``/``, no query, fragment or percent-encoding;
* the whole SPIFFE ID is at most 2048 bytes (an AZTP ID at most 2046, so that its SPIFFE ID fits).

Identity names follow the AZTP rule: 2-64 characters of ``[A-Za-z0-9-/]``, not starting or ending
with ``-`` or ``/``, and without ``//`` (which would make an empty SPIFFE path segment).

Strings are parsed by hand with full-string matching (``re.fullmatch``), never with ``urllib``,
which normalises. Parsing results are cached, since parsing sits on hot paths.

This package is the one owner of these rules: every other layer takes :class:`SpiffeId`,
:class:`AztpId` or :class:`TrustDomain` values (or calls the parsers here) and never re-checks
an ID itself. It is pure: no I/O, standard library only. Layout (private modules behind this
facade): ``_rules`` (limits, character sets, fast-path regexes), ``_diagnosis`` (why an input
is invalid, slow path), ``_names`` (name rule and sanitizer), ``_spiffe`` (:class:`TrustDomain`,
:class:`SpiffeId`), ``_aztp`` (:class:`AztpId`).
"""

from __future__ import annotations

from ._aztp import AztpId, is_valid_aztp_id, parse_aztp_id, require_aztp_id
from ._names import sanitize_name, validate_name
from ._rules import (
    AZTP_SCHEME,
    DEFAULT_ENVIRONMENT,
    DEFAULT_METHOD,
    MAX_ID_BYTES,
    MAX_NAME_LENGTH,
    MAX_TRUST_DOMAIN_BYTES,
    MIN_NAME_LENGTH,
    SPIFFE_SCHEME,
    WORKLOAD_SEGMENT,
)
from ._spiffe import SpiffeId, TrustDomain, parse_spiffe_id, validate_trust_domain

__all__ = [
    "AZTP_SCHEME",
    "DEFAULT_ENVIRONMENT",
    "DEFAULT_METHOD",
    "MAX_ID_BYTES",
    "MAX_NAME_LENGTH",
    "MAX_TRUST_DOMAIN_BYTES",
    "MIN_NAME_LENGTH",
    "SPIFFE_SCHEME",
    "WORKLOAD_SEGMENT",
    "AztpId",
    "SpiffeId",
    "TrustDomain",
    "is_valid_aztp_id",
    "parse_aztp_id",
    "parse_spiffe_id",
    "require_aztp_id",
    "sanitize_name",
    "validate_name",
    "validate_trust_domain",
]

# The value types are documented, pickled and shown under the public path.
for _cls in (AztpId, SpiffeId, TrustDomain):
    _cls.__module__ = __name__
del _cls
