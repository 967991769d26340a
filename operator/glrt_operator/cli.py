"""`glrt-operator run [--namespace NS ...|--all-namespaces]`: run the operator with the current kubeconfig or the
in-cluster service account."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

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
    run.add_argument(
        "--leader-election",
        metavar="NAMESPACE/NAME",
        default=None,
        help="run as one of several replicas: act only while holding this coordination.k8s.io Lease",
    )
    run.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    imp = commands.add_parser("import-config", help="print a Runner manifest per [[runners]] entry of a config.toml")
    imp.add_argument("path", help="an existing gitlab-runner config.toml")
    imp.add_argument("--namespace", "-n", default="default", help="namespace of the printed Runners")
    return parser


def _import_config(path: str, namespace: str) -> int:
    import tomllib

    import yaml

    from .runner_config.importer import import_config

    with open(path, "rb") as f:
        document = tomllib.load(f)
    # One YAML stream for `kubectl apply -f -`; the warnings are YAML comments above each manifest.
    for imported in import_config(document, namespace):
        print("---")
        for warning in imported.warnings:
            print(f"# WARNING: {warning}")
        print(yaml.safe_dump(imported.manifest, sort_keys=False), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "import-config":
        return _import_config(args.path, args.namespace)
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
        metrics,
        resources,  # noqa: F401  (registers the handlers)
    )

    if config.metrics_port:
        metrics.serve(config.metrics_port)

    from .controller import lean_bodies
    from .core.namespaces import Scope

    lean_bodies.install()
    leadership = _lead(args.leader_election, args.liveness) if args.leader_election else None
    try:
        kopf.run(
            memo=kopf.Memo(scope=Scope.of(args.namespaces)),
            standalone=True,
            clusterwide=bool(args.all_namespaces),
            namespaces=args.namespaces or (),
            liveness_endpoint=args.liveness,
        )
    finally:
        if leadership is not None:
            leadership.release()
    return 0


def _lead(lease: str, liveness: str | None) -> Any:
    """Wait for the Lease (answering the liveness probe meanwhile: a standby is healthy), then keep it renewed."""
    import os
    import socket

    import kubernetes

    from .adapters.kube_client import load_api_client
    from .leadership import Leadership, LeaseSettings
    from .probes import standby_probe

    namespace, _, name = lease.partition("/")
    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    leadership = Leadership(
        kubernetes.client.CoordinationV1Api(load_api_client()), LeaseSettings(namespace, name, identity)
    )
    with standby_probe(liveness):
        leadership.acquire()
    leadership.hold()
    return leadership
