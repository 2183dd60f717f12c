"""The identity authority as an HTTP service (``aztp-agents serve``).

``create_app(authority)`` is the ASGI application (FastAPI): every route of the AZTP REST API
that the official ``aztp-client`` speaks (``WIRE.md``), plus our extensions under ``/v1``
(CSR issuance, JWT-SVIDs, trust bundle, unlink, reinstate, policies, audit, decision state and
its change feed). ``run(home, host, port)`` serves the store under ``home`` with uvicorn.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..authority import DEFAULT_TRUST_DOMAIN, Authority
from ..store import Store
from .app import create_app
from .context import ServerContext

__all__ = ["ServerContext", "create_app", "run"]

log = logging.getLogger(__name__)


def run(
    home: Path | str,
    host: str = "127.0.0.1",
    port: int = 8700,
    tls_cert: Path | str | None = None,
    tls_key: Path | str | None = None,
    *,
    prefix: str = "",
    trust_domain: str | None = None,
    log_level: str = "info",
    access_log: bool = False,
    database_url: str | None = None,
    metrics_token: str | None = None,
) -> None:
    """Serve the authority whose store is ``home/aztp.db`` (or the database at
    ``database_url``, which several servers may share) until interrupted.

    With ``metrics_token``, Prometheus metrics are served at ``/metrics`` to its bearer
    (:mod:`.metrics`). With ``tls_cert`` and ``tls_key`` (PEM files) the server speaks HTTPS
    only. API keys made
    with ``aztp-agents keys create`` on the same home are accepted at once, without a restart.
    """
    import uvicorn

    if (tls_cert is None) != (tls_key is None):
        raise ValueError("give both --tls-cert and --tls-key, or neither")
    for f in (tls_cert, tls_key):
        if f is not None and not Path(f).is_file():
            raise FileNotFoundError(f"TLS file not found: {f}")
    home = Path(home).expanduser()
    store = Store.open_url(database_url) if database_url else Store.open_sqlite(home / "aztp.db")
    try:
        authority = Authority(store, default_trust_domain=trust_domain or DEFAULT_TRUST_DOMAIN)
        app = create_app(authority, prefix=prefix, metrics_token=metrics_token)
        uvicorn.run(
            app,
            host=host,
            port=port,
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
            log_level=log_level,
            access_log=access_log,
            server_header=False,
            timeout_graceful_shutdown=3,
        )
    finally:
        store.close()
