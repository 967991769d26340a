"""`make chaos`: the operator under a hostile user and a flaky GitLab, with figures. Not part of `make test`.

Three phases against the local control plane, the fake GitLab (in this process, to read its call log and inject
faults) and the operator as a real process:

1. Kill points: the operator is SIGKILLed in the middle of a creation, an adoption, a rotation and a deletion
   (while GitLab holds its answer to the very call, or after a random delay), then restarted.
2. GitLab faults: 5xx, dropped connections before and after the request was processed, and 429 with Retry-After,
   at `--fault-rate` of all calls for `--fault-seconds`, while Runners are created, edited, rotated and deleted.
3. The bad-input corpus (tests/data/bad_inputs.py): every entry applied; the apply-time ones must be refused by the
   apiserver, the others must end in a condition with a reason and a message. GitLab calls per bad Runner are
   counted over `--bad-seconds` with the operator's default back-off.
4. Garbled answers after commit (issue #27): GitLab creates the runner (or resets its token) and the answer comes
   back as a proxy's page, an empty body, a 303 or JSON whose token is null, empty, a number or of no token's
   shape. Every Runner must end Ready with the one runner GitLab made and a token GitLab accepts, and none of
   them may be left in GitLab after deletion.

Then the invariants over everything (duplicates, orphans, lost tokens, stuck Runners) and a leak scan (operator
logs, Events, Runner status and metadata, the fake's call log) for every token and the tracebacks in the logs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kubernetes import client  # noqa: E402

from tests.data.bad_inputs import CORPUS  # noqa: E402
from tests.e2e.conftest import GROUP, PAT, PLURAL, PROJECT_ID, VERSION, Runners  # noqa: E402
from tests.fake_gitlab import FakeGitLab, Fault  # noqa: E402
from tests.fake_gitlab.faults import GARBLES  # noqa: E402
from tests.harness import bad_inputs  # noqa: E402
from tests.harness.controlplane import ControlPlane  # noqa: E402
from tests.harness.impostor import Impostor  # noqa: E402
from tests.harness.operator import OperatorProcess  # noqa: E402
from tests.harness.waiting import wait_for  # noqa: E402

MARKER = re.compile(r"Runner uid ([0-9a-f-]{36})\)")
# A call that reached GitLab this soon after a 429 was answered was already on its way when the operator read it.
IN_FLIGHT = timedelta(milliseconds=50)
PRODUCTION_BACKOFF = {"GLRT_ERROR_BACKOFF": "15", "GLRT_ERROR_BACKOFF_MAX": "600", "GLRT_RESYNC_INTERVAL": "300"}


@dataclass
class Figures:
    trials: int = 0
    kills: int = 0
    duplicates: int = 0
    orphans: int = 0
    lost_tokens: int = 0
    stuck: list[str] = field(default_factory=list)
    refused_at_apply: int = 0
    conditioned: int = 0
    bad_wrong: list[str] = field(default_factory=list)
    bad_deleted: int = 0
    calls_per_bad_runner: dict[str, int] = field(default_factory=dict)
    fault_calls: int = 0
    faulted: int = 0
    retry_after_violations: int = 0
    retry_after_in_flight: int = 0
    violating: list[str] = field(default_factory=list)
    rate_limited: int = 0
    leaks: list[str] = field(default_factory=list)
    tracebacks: int = 0
    garbled_sent: int = 0  # garbled answers GitLab's processed creates and resets came back as
    garbled_runners: int = 0
    garbled_posts: int = 0  # POST /user/runners in that phase (as many as Runners: none sent twice)
    garbled_ready_without_token: list[str] = field(default_factory=list)
    garbled_left: int = 0  # their runners still in GitLab after the Runners were deleted
    operators: list[OperatorProcess] = field(default_factory=list)


class Chaos:
    def __init__(self, cp: ControlPlane, gitlab: FakeGitLab, logs: Path, args: argparse.Namespace):
        self.cp, self.gitlab, self.logs, self.args = cp, gitlab, logs, args
        self.api = cp.api_client()
        self.core = client.CoreV1Api(self.api)
        self.figures = Figures()
        self.namespaces: list[str] = []

    # --- plumbing ---------------------------------------------------------------------------------------------

    def namespace(self, stem: str) -> Runners:
        name = f"chaos-{stem}-{int(time.time()) % 100000}"
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        self.namespaces.append(name)
        runners = Runners(self.api, name, self.gitlab.url)
        runners.put_secret("gitlab-api", {"token": PAT})
        return runners

    def operator(self, runners: Runners, env: dict[str, str] | None = None) -> OperatorProcess:
        op = OperatorProcess(self.cp.kubeconfig, runners.namespace, self.logs, env=env)
        self.figures.operators.append(op)
        return op.start()

    def kill_and_restart(self, op: OperatorProcess) -> None:
        op.kill()
        self.figures.kills += 1
        op.start()

    def kill_during(self, op: OperatorProcess, method: str, path: str, action: Any, *, on_call: bool = False) -> None:
        """`action`, then SIGKILL while GitLab holds its answer to `method path` (or, every other trial, after a
        random delay), then restart."""
        if on_call or self.figures.trials % 2 == 0:
            fault = self.gitlab.faults.add(
                Fault(method=method, path=path, kind="hold_after_commit", seconds=8, count=1)
            )
            action()
            wait_for(lambda: fault.hits >= 1, timeout=60, message=f"{method} {path}")
            time.sleep(0.2)
        else:
            action()
            time.sleep(random.uniform(0.0, 2.0))
        self.kill_and_restart(op)
        self.gitlab.faults.clear()

    # --- phase 1: kill points -------------------------------------------------------------------------------

    def kill_points(self) -> None:
        runners = self.namespace("kill")
        op = self.operator(runners)
        ready: list[str] = []
        for i in range(self.args.trials):
            name = f"create-{i}"
            self.kill_during(op, "POST", r"/user/runners$", lambda n=name: runners.create(runners.manifest(n)))
            self.figures.trials += 1
            self.settle_ready(runners, name, ready)
        for i in range(self.args.trials):
            name = f"adopt-{i}"
            # GitLab creates the runner but its answer never arrives: the restarted operator must adopt it.
            self.kill_during(
                op, "POST", r"/user/runners$", lambda n=name: runners.create(runners.manifest(n)), on_call=True
            )
            fault = self.gitlab.faults.add(
                Fault(method="POST", path=r"/reset_authentication_token$", kind="hold_after_commit", seconds=8, count=1)
            )
            try:  # the adoption resets the orphan's token: kill while GitLab holds that answer
                wait_for(lambda f=fault: f.hits >= 1, timeout=30, message="adoption reset")
                self.kill_and_restart(op)
            except TimeoutError:
                pass  # killed before GitLab created anything: a plain creation followed, nothing to adopt
            self.gitlab.faults.clear()
            self.figures.trials += 1
            self.settle_ready(runners, name, ready)
        for i, name in enumerate(ready[: self.args.trials]):
            stamp = (datetime.now(UTC) + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
            self.kill_during(
                op,
                "POST",
                r"/reset_authentication_token$",
                lambda n=name, s=stamp: runners.patch_spec(n, tokenRotation={"requestedAt": s}),
            )
            self.figures.trials += 1
            self.settle_ready(runners, name, [])
        for name in ready[-self.args.trials :]:
            self.kill_during(op, "DELETE", r"/runners/\d+$", lambda n=name: runners.delete(n))
            self.figures.trials += 1
            self.settle_deleted(runners, name)
        self.check(runners)
        op.stop()

    def settle_ready(self, runners: Runners, name: str, ready: list[str]) -> None:
        try:
            runners.wait_ready(name, timeout=self.args.settle)
            ready.append(name)
        except TimeoutError:
            self.figures.stuck.append(f"{runners.namespace}/{name} not Ready")

    def settle_deleted(self, runners: Runners, name: str) -> None:
        try:
            wait_for(lambda: not runners.exists(name), timeout=self.args.settle, message=f"{name} deleted")
        except TimeoutError:
            self.figures.stuck.append(f"{runners.namespace}/{name} not deleted")

    # --- phase 2: GitLab faults -----------------------------------------------------------------------------

    def faults(self) -> None:
        runners = self.namespace("faults")
        op = self.operator(runners)
        start = len(self.gitlab.calls)
        share = self.args.fault_rate / 4
        for rule in (
            Fault(kind="status", status=503, rate=share),
            Fault(kind="drop", rate=share),
            Fault(kind="drop_after_commit", rate=share),
            Fault(kind="rate_limit_app", retry_after=2, rate=share),
        ):
            self.gitlab.faults.add(rule)
        names = [f"flaky-{i}" for i in range(self.args.runners)]
        deadline = time.monotonic() + self.args.fault_seconds
        for name in names:
            runners.create(runners.manifest(name))
        time.sleep(self.args.fault_seconds / 3)
        for name in names:
            runners.patch_spec(name, tags=["docker", "linux", "edited"])
        time.sleep(self.args.fault_seconds / 3)
        for i, name in enumerate(names):
            stamp = (datetime.now(UTC) + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
            runners.patch_spec(name, tokenRotation={"requestedAt": stamp})
        doomed = names[: len(names) // 2]
        for name in doomed:
            runners.delete(name)
        time.sleep(max(0.0, deadline - time.monotonic()))
        rules = self.gitlab.faults.rules
        self.gitlab.faults.clear()
        calls = self.gitlab.calls[start:]
        self.figures.fault_calls += len(calls)
        self.figures.faulted += sum(r.hits for r in rules)
        self.retry_after_violations(calls)
        for name in names:
            if name in doomed:
                self.settle_deleted(runners, name)
            else:
                self.settle_ready(runners, name, [])
                self.figures.trials += 1
        self.figures.trials += len(doomed)
        self.check(runners)
        op.stop()

    def retry_after_violations(self, calls: list[Any]) -> None:
        """Calls GitLab received while a Retry-After it had sent was still running (one host, every call). A call
        that arrived within IN_FLIGHT of the 429's answer was sent before the operator could have read it (up to
        GLRT_GITLAB_CONCURRENCY calls are in flight at once): counted apart, as in flight."""
        until: datetime | None = None
        answered: datetime | None = None
        for c in calls:
            if until is not None and c.time < until:
                if answered is not None and c.time <= answered + IN_FLIGHT:
                    self.figures.retry_after_in_flight += 1
                else:
                    self.figures.retry_after_violations += 1
                    self.figures.violating.append(f"{c.method} {c.path} +{(c.time - answered).total_seconds():.2f}s")
            if c.fault == "rate_limit_app":
                self.figures.rate_limited += 1
                until = max(until or c.time, c.time + timedelta(seconds=2))
                answered = c.time + timedelta(seconds=c.duration)

    # --- phase 3: the bad-input corpus --------------------------------------------------------------------------

    def bad(self) -> None:
        runners = self.namespace("bad")
        op = self.operator(runners, env=PRODUCTION_BACKOFF)
        with Impostor().running() as impostor:
            outcomes, users = [], {}
            start = len(self.gitlab.calls)
            for bad in CORPUS:
                body, user = bad_inputs.prepare(bad, runners, self.gitlab, impostor)
                outcome = bad_inputs.Outcome(bad, bad_inputs.runner_name(bad))
                bad_inputs.apply(bad, body, runners, outcome)
                users[outcome.name] = (user, bad.url)
                outcomes.append(outcome)
            created_at = time.monotonic()
            bad_inputs.wait_conditions(outcomes, runners, timeout=60)
            time.sleep(max(0.0, self.args.bad_seconds - (time.monotonic() - created_at)))
            per_user = bad_inputs.calls_by_user(self.gitlab, start)
            for o in outcomes:
                if not o.created:
                    continue
                user, url = users[o.name]
                if url and url.startswith("impostor:"):
                    self.figures.calls_per_bad_runner[o.bad.id] = impostor.requests[url.split(":", 1)[1]]
                elif user:
                    self.figures.calls_per_bad_runner[o.bad.id] = per_user[user]
            for o in outcomes:
                c = runners.condition(o.name) if o.created else {}
                o.reason, o.message = c.get("reason"), c.get("message")
                if o.bad.expect == "apply" and o.refused_at_apply:
                    self.figures.refused_at_apply += 1
                elif o.bad.expect == "condition" and o.ok:
                    self.figures.conditioned += 1
                else:
                    self.figures.bad_wrong.append(f"{o.bad.id}: refused={o.refused_at_apply!r} reason={o.reason}")
            # Deletion with the test back-off (a deletion that retries a search gives up after a few retries).
            op.stop()
            op = self.operator(runners)
            bad_inputs.delete_all(outcomes, runners, timeout=self.args.settle)
            self.figures.bad_deleted = sum(o.deleted for o in outcomes)
            self.figures.stuck += [
                f"{runners.namespace}/{o.name} not deleted" for o in outcomes if o.created and not o.deleted
            ]
        self.check(runners)
        op.stop()

    # --- phase 4: garbled answers after commit ----------------------------------------------------------------

    def garble_next(self, path: str, how: str, action: Any) -> None:
        """`action`, whose next POST to `path` GitLab processes and answers garbled as `how` says."""
        fault = self.gitlab.faults.add(Fault(method="POST", path=path, kind="garble_after_commit", garble=how, count=1))
        action()
        try:
            wait_for(lambda: fault.hits >= 1, timeout=60, message=f"garbled {how} answer to POST {path}")
            self.figures.garbled_sent += 1
        finally:
            self.gitlab.faults.clear()

    def garbled(self) -> None:
        runners = self.namespace("garbled")
        # Production's resync interval: a bad token stored would stay for minutes, not be repaired by the next resync.
        op = self.operator(runners, env={"GLRT_RESYNC_INTERVAL": "300"})
        start = len(self.gitlab.calls)
        names = [f"garbled-{i}" for i in range(len(GARBLES))]
        for name, how in zip(names, GARBLES, strict=True):
            self.garble_next(r"/user/runners$", how, lambda n=name: runners.create(runners.manifest(n)))
        ready: list[str] = []
        for name in names:
            self.settle_ready(runners, name, ready)
            self.garbled_token(runners, name)
        for i, (name, how) in enumerate(zip(ready, GARBLES, strict=False)):
            stamp = (datetime.now(UTC) + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
            patch = lambda n=name, s=stamp: runners.patch_spec(n, tokenRotation={"requestedAt": s})  # noqa: E731
            self.garble_next(r"/reset_authentication_token$", how, patch)
            self.settle_ready(runners, name, [])
            self.garbled_token(runners, name)
        self.figures.trials += len(names) + len(ready)
        self.figures.garbled_runners += len(names)
        uids = {runners.get(n)["metadata"]["uid"] for n in names}
        # Each Runner POSTs at least once to exist: as many POSTs as Runners means none was sent twice.
        self.figures.garbled_posts += sum(
            1 for c in self.gitlab.calls[start:] if c.method == "POST" and c.path.endswith("/user/runners")
        )
        self.check(runners)  # duplicates, orphans, lost tokens
        for name in names:
            runners.delete(name)
        for name in names:
            self.settle_deleted(runners, name)
        self.figures.garbled_left += sum(
            1 for r in self.gitlab.runners.values() if (m := MARKER.search(r.maintenance_note or "")) and m[1] in uids
        )
        op.stop()

    def garbled_token(self, runners: Runners, name: str) -> None:
        """A Ready Runner's stored token must be the one GitLab holds for its runner, of GitLab's shape."""
        body = runners.get(name)
        if runners.condition(name).get("status") != "True":
            return
        runner = self.gitlab.runner(int(body["status"]["runnerId"]))
        stored = runners.secret_data(f"{name}-runner-token").get("token", "")
        if runner is None or stored != runner.token or not stored.startswith("glrt-"):
            self.figures.garbled_ready_without_token.append(f"{runners.namespace}/{name}")

    # --- invariants and leaks -------------------------------------------------------------------------------

    def check(self, runners: Runners) -> None:
        items = runners.custom.list_namespaced_custom_object(GROUP, VERSION, runners.namespace, PLURAL)["items"]
        uids = {item["metadata"]["uid"]: item for item in items}
        by_uid: Counter[str] = Counter()
        all_uids = self.all_runner_uids()
        for runner in self.gitlab.runners.values():
            match = MARKER.search(runner.maintenance_note or "")
            if not match:
                continue
            by_uid[match[1]] += 1
            if match[1] not in all_uids:
                self.figures.orphans += 1
                self.gitlab.delete_runner(runner.id)  # counted once
        self.figures.duplicates += sum(n - 1 for uid, n in by_uid.items() if uid in uids and n > 1)
        for item in items:
            status = item.get("status") or {}
            runner_id = status.get("runnerId")
            ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
            if not runner_id or ready.get("status") != "True":
                continue
            try:
                stored = runners.secret_data(f"{item['metadata']['name']}-runner-token").get("token")
            except client.ApiException:
                stored = None
            gl = self.gitlab.runner(int(runner_id))
            if gl is None or stored != gl.token:
                self.figures.lost_tokens += 1

    def all_runner_uids(self) -> set[str]:
        items = client.CustomObjectsApi(self.api).list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
        return {item["metadata"]["uid"] for item in items}

    def leak_scan(self) -> None:
        secrets = {r.token for r in self.gitlab.runners.values() if r.token} | set(self.gitlab.revoked_tokens)
        secrets |= {PAT} | {f"glpat-corpus-{b.id}-0123456789" for b in CORPUS}
        secrets = {s for s in secrets if s and len(s) >= 12}
        places = {"operator logs": "".join(op.output() for op in self.figures.operators)}
        events, runner_json = [], []
        for ns in self.namespaces:
            events += [f"{e.reason} {e.message}" for e in self.core.list_namespaced_event(ns).items]
            listing = client.CustomObjectsApi(self.api).list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
            runner_json += [
                json.dumps({"status": i.get("status"), "metadata": i["metadata"]}) for i in listing["items"]
            ]
        places["events"] = "\n".join(events)
        places["runners"] = "\n".join(runner_json)
        places["gitlab call log"] = json.dumps([c.params for c in self.gitlab.calls], default=str)
        for where, text in places.items():
            self.figures.leaks += [f"{where}: {s[:9]}..." for s in secrets if s in text]
        self.figures.tracebacks = places["operator logs"].count("Traceback")

    def cleanup(self) -> None:
        for ns in self.namespaces:
            with contextlib.suppress(client.ApiException):
                self.core.delete_namespace(ns)


def report(f: Figures, args: argparse.Namespace, seconds: float) -> None:
    calls = sorted(f.calls_per_bad_runner.values())
    print("\n=== chaos figures ===")
    print(f"command: scripts/chaos.py {' '.join(sys.argv[1:])}  ({seconds:.0f}s)")
    print(f"trials: {f.trials}   kills (SIGKILL): {f.kills}")
    print(f"duplicates: {f.duplicates}   orphans: {f.orphans}   lost tokens: {f.lost_tokens}   stuck: {len(f.stuck)}")
    for s in f.stuck:
        print(f"  stuck: {s}")
    print(
        f"GitLab faults: {f.faulted} of {f.fault_calls} calls ({f.faulted / max(1, f.fault_calls):.0%}, nominal "
        f"{args.fault_rate:.0%}) over {args.fault_seconds:.0f}s; 429s sent: {f.rate_limited}; calls inside a "
        f"running Retry-After: {f.retry_after_violations} sent after the 429 was answered"
        f" {f.violating[:5]}, {f.retry_after_in_flight} already in flight"
    )
    total = len(CORPUS)
    print(
        f"bad inputs: {total} ({sum(b.expect == 'apply' for b in CORPUS)} apply-time, "
        f"{sum(b.expect == 'condition' for b in CORPUS)} operator-time): refused at apply {f.refused_at_apply}, "
        f"conditioned with reason+message {f.conditioned}, wrong {len(f.bad_wrong)}; deleted afterwards "
        f"{f.bad_deleted}"
    )
    for w in f.bad_wrong:
        print(f"  wrong: {w}")
    if calls:
        print(
            f"GitLab calls per bad Runner over {args.bad_seconds:.0f}s (default back-off 15s doubling): "
            f"max {calls[-1]}, median {calls[len(calls) // 2]}, total {sum(calls)} for {len(calls)} Runners"
        )
        worst = sorted(f.calls_per_bad_runner.items(), key=lambda kv: -kv[1])[:5]
        print(f"  most: {dict(worst)}")
    if f.garbled_runners:
        print(
            f"garbled answers after commit: {f.garbled_sent} sent ({len(GARBLES)} kinds, to creates and resets) "
            f"for {f.garbled_runners} Runners; POST /user/runners: {f.garbled_posts}; "
            f"Ready=True without a working token: {len(f.garbled_ready_without_token)} "
            f"{f.garbled_ready_without_token[:5]}; runners left in GitLab after deletion: {f.garbled_left}"
        )
    print(f"leaks: {len(f.leaks)} {f.leaks[:5]}   tracebacks in operator logs: {f.tracebacks}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=3, help="trials per kill point (create, adopt, rotate, delete)")
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--fault-seconds", type=float, default=60.0)
    parser.add_argument("--runners", type=int, default=6, help="Runners during the fault phase")
    parser.add_argument("--bad-seconds", type=float, default=120.0)
    parser.add_argument("--settle", type=float, default=120.0, help="how long a Runner may take to settle")
    phases = ["kill", "faults", "bad", "garbled"]
    parser.add_argument("--phases", nargs="+", default=phases, choices=phases)
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args()
    random.seed(args.seed)
    started = time.monotonic()
    with ControlPlane() as cp, FakeGitLab().running() as gitlab, tempfile.TemporaryDirectory() as logs:
        cp.install_crds(REPO / "crds")
        owner = gitlab.add_user("platform")
        gitlab.add_group(3, "platform", owners=[owner])
        gitlab.add_project(PROJECT_ID, "builds", group_id=3, maintainers=[owner])
        gitlab.add_access_token(PAT, owner, scopes=["create_runner", "manage_runner", "read_api"])
        chaos = Chaos(cp, gitlab, Path(logs), args)
        try:
            for phase in args.phases:
                print(f"--- phase {phase} ---", flush=True)
                {"kill": chaos.kill_points, "faults": chaos.faults, "bad": chaos.bad, "garbled": chaos.garbled}[phase]()
            chaos.leak_scan()
        finally:
            for op in chaos.figures.operators:
                op.stop()
            chaos.cleanup()
        report(chaos.figures, args, time.monotonic() - started)
        f = chaos.figures
        bad = f.duplicates + f.orphans + f.lost_tokens + len(f.stuck) + len(f.bad_wrong) + len(f.leaks) + f.tracebacks
        bad += len(f.garbled_ready_without_token) + f.garbled_left + abs(f.garbled_posts - f.garbled_runners)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
