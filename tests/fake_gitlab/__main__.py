"""Command line: ``python -m tests.fake_gitlab --port 8080 --access-token TOKEN:api --project 7:web``.

Tokens, projects and groups given here belong to one user, ``demo``, who owns every group and project (and is an
administrator with ``--admin``). Prints one line, ``fake GitLab listening on <url>``, then serves until SIGINT or
SIGTERM and exits 0. Token values are never printed.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from .server import FakeGitLab


def _split_id(value: str, what: str) -> tuple[int, list[str]]:
    head, *rest = value.split(":")
    if not head.isdigit():
        raise argparse.ArgumentTypeError(f"{what} must start with a numeric id: {value!r}")
    return int(head), rest


def _access_token(value: str) -> tuple[str, list[str]]:
    token, _, scopes = value.partition(":")
    if not token:
        raise argparse.ArgumentTypeError("--access-token needs TOKEN[:scope1,scope2]")
    return token, [s for s in scopes.split(",") if s] or ["create_runner", "manage_runner"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.fake_gitlab", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument(
        "--access-token",
        action="append",
        default=[],
        type=_access_token,
        metavar="TOKEN[:SCOPES]",
        help="a token of user 'demo'; scopes comma-separated (default create_runner,manage_runner)",
    )
    parser.add_argument(
        "--group", action="append", default=[], metavar="ID[:PATH[:PARENT_ID]]", help="a group owned by 'demo'"
    )
    parser.add_argument(
        "--project",
        action="append",
        default=[],
        metavar="ID[:PATH[:GROUP_ID]]",
        help="a project owned by 'demo'",
    )
    parser.add_argument("--admin", action="store_true", help="make 'demo' an administrator")
    for name in ("runner", "group-runner", "project-runner"):
        parser.add_argument(
            f"--{name}-token-expiration-interval",
            type=int,
            default=None,
            metavar="SECONDS",
            help="runner token expiry",
        )
    parser.add_argument(
        "--gitlab-version",
        default=None,
        metavar="VERSION",
        help="the GitLab version to play, e.g. 17.8.2-ee (gates features; default a current release)",
    )
    parser.add_argument("--verbose", action="store_true", help="log method, path and status of each API call")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    gl = FakeGitLab(verbose=args.verbose)
    if args.gitlab_version is not None:
        try:
            gl.instance.update({"version": args.gitlab_version})
        except ValueError as exc:
            parser.error(str(exc))
    demo = gl.add_user("demo", admin=args.admin)
    try:
        for spec in args.group:
            group_id, rest = _split_id(spec, "--group")
            parent = int(rest[1]) if len(rest) > 1 and rest[1] else None
            gl.add_group(group_id, rest[0] if rest and rest[0] else f"group-{group_id}", [demo], parent_id=parent)
        for spec in args.project:
            project_id, rest = _split_id(spec, "--project")
            group = int(rest[1]) if len(rest) > 1 and rest[1] else None
            gl.add_project(project_id, rest[0] if rest and rest[0] else f"project-{project_id}", group, [demo])
    except (argparse.ArgumentTypeError, ValueError) as exc:
        parser.error(str(exc))
    for token, scopes in args.access_token:
        gl.add_access_token(token, demo, scopes=scopes)
    gl.settings.runner_token_expiration_interval = args.runner_token_expiration_interval
    gl.settings.group_runner_token_expiration_interval = args.group_runner_token_expiration_interval
    gl.settings.project_runner_token_expiration_interval = args.project_runner_token_expiration_interval

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    gl.start(args.host, args.port)
    print(f"fake GitLab listening on {gl.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        gl.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
