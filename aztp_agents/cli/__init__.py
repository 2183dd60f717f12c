"""The ``aztp-agents`` command: identities, flows, links, policies, audit, keys, server, demo.

Works on the embedded authority (``--home DIR`` / ``$AZTP_HOME``) or on a server
(``--url URL --api-key KEY`` / ``$AZTP_URL``, ``$AZTP_API_KEY``); every AZTP operation goes
through the :class:`~aztp_agents.Aztp` facade, so both behave the same.

Tables for people, ``--json`` for scripts. Exit codes:

* 0 ok
* 1 a negative answer (verification invalid, a call ``explain`` says is denied, audit chain
  broken) or an unexpected failure
* 2 usage error or bad input (bad flag, malformed ID, invalid JSON, conflict)
* 3 not found (identity, flow, policy, organization, key)
* 4 authentication or permission refused
* 5 the authority is unavailable (server unreachable, store locked or unreadable)

Errors are one line on stderr, ``error: <message>``; ``--debug`` adds the traceback.
Secrets are never printed, except the one-time API key of ``org create`` / ``keys create``
/ ``keys rotate`` (and the JWT-SVID that ``svid jwt`` exists to print).

Layout: ``_app`` (the root app, global options, :func:`main`), ``_state``, ``_errors`` (exit
codes, one-line errors), ``_output`` (tables, JSON), ``_options`` (shared arguments),
``_resolve`` (names and ids to AZTP IDs and flows), ``_client`` (how commands reach the
authority); then one module per command group: ``identity``, ``flow``, ``link``, ``verify``, ``explain``,
``policy``, ``credentials`` (bundle, svid), ``audit``, ``admin`` (org, keys, user), ``serve``, ``console``,
``demo``.
"""

from __future__ import annotations

from ._app import app, main

# Importing a command module registers its commands on `app`, and the order of these imports
# is the order of `aztp-agents --help`: keep it, not the alphabet.
# isort: off
from . import identity, flow, link, verify, explain, policy, credentials  # noqa: F401
from . import audit, admin, serve, console, db, demo  # noqa: F401
# isort: on

__all__ = ["app", "main"]
