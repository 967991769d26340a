"""`glrt-operator run [--namespace NS ...|--all-namespaces]`: run the operator with the current kubeconfig or the
in-cluster service account."""

from __future__ import annotations

import argparse
import logging
import sys

import kopf

from .settings import ConfigError, OperatorConfig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glrt-operator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the operator")
    scope = run.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "--namespace", "-n", action="append", dest="namespaces", metavar="NS", help="watch NS (repeatable)"
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    run.add_argument(
        "--liveness",
        metavar="URL",
        default=None,
        help="serve Kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz (never calls GitLab)",
    )
    run.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = OperatorConfig.from_env()  # fail fast on bad GLRT_* settings, before connecting anywhere
    except ConfigError as exc:
        print(f"glrt-operator: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Quiet the HTTP client libraries: their debug lines would include request headers.
    for noisy in ("httpx", "httpcore", "urllib3", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from . import (
        handlers,  # noqa: F401  (registers the handlers)
        metrics,
    )

    if config.metrics_port:
        metrics.serve(config.metrics_port)

    kopf.run(
        standalone=True,
        clusterwide=bool(args.all_namespaces),
        namespaces=args.namespaces or (),
        liveness_endpoint=args.liveness,
    )
    return 0
