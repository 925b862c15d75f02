"""Run the KFP test server standalone for demos: ``python -m tests.kfp_server --port 8888``."""

from __future__ import annotations

import argparse
import sys

from .server import AuthCheck, KfpTestServer, bearer_token, session_cookie


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.kfp_server",
        description="KFP v2beta1 REST test server on 127.0.0.1 (in-memory, for demos and tests).",
    )
    parser.add_argument(
        "--port", type=int, default=8888, help="port on 127.0.0.1 (0 = pick a free one)"
    )
    parser.add_argument("--run-polls", type=int, default=1, help="GET polls until a run finishes")
    parser.add_argument(
        "--multi-user", action="store_true", help="report multi-user mode in healthz"
    )
    parser.add_argument("--bearer-token", help="require 'Authorization: Bearer TOKEN'")
    parser.add_argument("--session-cookie", metavar="NAME=VALUE", help="require this cookie")
    parser.add_argument(
        "--forbid-namespace", action="append", default=[], help="answer 403 for this namespace"
    )
    parser.add_argument("--quiet", action="store_true", help="do not print the access log")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted; prints the URL first so scripts can read it."""
    args = _parse_args(argv)
    require_auth: AuthCheck | None = None
    if args.bearer_token:
        require_auth = bearer_token(args.bearer_token)
    elif args.session_cookie:
        name, _, value = args.session_cookie.partition("=")
        require_auth = session_cookie(name, value)
    server = KfpTestServer(
        args.port,
        require_auth=require_auth,
        forbidden_namespaces=args.forbid_namespace,
        multi_user=args.multi_user,
        run_polls=args.run_polls,
        log_requests=not args.quiet,
    )
    print(f"KFP test server listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
