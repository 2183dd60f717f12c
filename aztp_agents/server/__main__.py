"""``python -m aztp_agents.server --home DIR --host 127.0.0.1 --port N [--tls-cert F --tls-key F]``."""

from __future__ import annotations

import argparse
import sys

from ..client import resolve_home
from ..errors import AztpError
from . import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aztp_agents.server",
                                     description="Serve the AZTP identity authority over HTTP.")
    parser.add_argument("--home", help="directory of the store (default: $AZTP_HOME or ~/.aztp)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--tls-cert", help="PEM certificate (chain) file; serve HTTPS")
    parser.add_argument("--tls-key", help="PEM private key file of --tls-cert")
    parser.add_argument("--prefix", default="", help="path prefix of every route, e.g. /astha/v1")
    parser.add_argument("--trust-domain", help="default trust domain of new organizations' identities")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    try:
        run(resolve_home(args.home), args.host, args.port, args.tls_cert, args.tls_key, prefix=args.prefix,
            trust_domain=args.trust_domain, log_level=args.log_level, access_log=args.access_log)
    except (AztpError, ValueError, OSError) as exc:
        print(f"aztp-agents serve: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
