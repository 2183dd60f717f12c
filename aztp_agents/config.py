"""The one reader of the environment's configuration.

``Aztp()``, the process-wide default client of the adapters (``default_client``) and the CLI
read the same variables, at the time of use (never cached at import), so a CLI command and a
crew in the same shell act on the same authority:

* ``AZTP_URL``: a server (``aztp-agents serve``); set, ``Aztp()`` is a remote client. Several
  replicas on one database are comma-separated (``http://a:8700,http://b:8700``): the client
  follows the first and moves to the next when it stops answering;
* ``AZTP_API_KEY``: the API key for that server (or the principal of an embedded store);
* ``AZTP_HOME``: the embedded store's folder (default ``~/.aztp``);
* ``AZTP_DATABASE_URL``: the embedded authority's store is this database instead of the
  SQLite file under the home (``postgresql://user@host/db``); processes on one database
  share the authority without a server. Its CA keys are sealed with ``AZTP_MASTER_KEY`` (or
  the file ``AZTP_MASTER_KEY_FILE``), the same in every process.

Explicit arguments win: ``Aztp(home=...)`` is embedded on that folder even when ``AZTP_URL``
or ``AZTP_DATABASE_URL`` is set (as ``--home`` is for the CLI). Between the variables,
``AZTP_URL`` (a server) comes first, then ``AZTP_DATABASE_URL``, then ``AZTP_HOME``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AztpConfig"]


@dataclass(frozen=True)
class AztpConfig:
    """Where the authority is, as the environment says it now."""

    url: str | None = None
    api_key: str | None = None
    home: Path | None = None
    database_url: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AztpConfig:
        env = os.environ if environ is None else environ
        home = env.get("AZTP_HOME") or None
        return cls(
            url=env.get("AZTP_URL") or None,
            api_key=env.get("AZTP_API_KEY") or None,
            home=Path(home).expanduser() if home else None,
            database_url=env.get("AZTP_DATABASE_URL") or None,
        )

    def resolved_home(self) -> Path:
        """The embedded store's folder: ``AZTP_HOME``, else ``~/.aztp``."""
        return self.home or Path.home() / ".aztp"
