"""Real SPIFFE credentials: a per-organization CA, X.509-SVIDs, JWT-SVIDs and trust bundles.

One module per noun, in the way go-spiffe splits ``x509svid`` / ``jwtsvid`` / ``bundle``:

* :mod:`.ca` - :class:`CertificateAuthority`, an EC P-256 self-signed CA for one trust domain
  that issues X.509-SVIDs (from a public key or a CSR) and mints JWT-SVIDs with the same key;
* :mod:`.x509svid` - :class:`X509Svid`, the leaf template and :func:`validate_x509_svid`;
* :mod:`.jwtsvid` - :class:`JwtSvid`, ES256 minting and :func:`validate_jwt_svid`;
* :mod:`.bundle` - :class:`TrustBundle` and its SPIFFE bundle (JWKS) form;
* :mod:`.keys` - P-256 key pairs, key ids (``kid``) and CSRs.

Validation failures raise :class:`~aztp_agents.errors.SvidValidationError` with a ``reason``.
SPIFFE IDs are parsed by :mod:`aztp_agents.ids` (the one owner of the ID rules); functions here
take a :class:`~aztp_agents.ids.SpiffeId` or its string form.
"""

from __future__ import annotations

from ._time import CLOCK_SKEW_SECONDS
from .bundle import TrustBundle
from .ca import CertificateAuthority
from .jwtsvid import MAX_JWT_LENGTH, JwtSvid, validate_jwt_svid
from .keys import (
    generate_private_key,
    kid_for_public_key,
    load_private_key,
    make_csr,
    private_key_to_pem,
)
from .x509svid import X509Svid, validate_x509_svid

__all__ = [
    "CLOCK_SKEW_SECONDS",
    "MAX_JWT_LENGTH",
    "CertificateAuthority",
    "JwtSvid",
    "TrustBundle",
    "X509Svid",
    "generate_private_key",
    "kid_for_public_key",
    "load_private_key",
    "make_csr",
    "private_key_to_pem",
    "validate_jwt_svid",
    "validate_x509_svid",
]
