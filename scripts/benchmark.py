"""`make bench`: the operator at fleet scale against the fake GitLab. Prints figures; asserts nothing.

Two runs on one local control plane, each with its own namespace and operator process, both against one fake
GitLab (in this process, so its own call log is read):

1. The fleet (`--runners`, 1,000): GitLab answers every operator call after `--latency` (50 ms). Create all Runners
   and time them to Ready; one heartbeat per Runner, as its pod would send (a manager that contacted GitLab lately
   spares the token check); one resync interval to settle, then count GitLab calls over one more interval (reads
   and writes apart); a spec edit of all, timed to Ready; deletion of all, timed until GitLab holds none.
2. Slow GitLab (`--slow-runners`, 500, with a short `--slow-resync`): once they are Ready, GitLab answers in
   `--slow-latency` (2 s); after one resync interval every one of them has a resync queued or running, and one
   new Runner is timed to Ready.

Kubernetes requests are counted twice per window (creation, at rest, restart, edit): from kube-apiserver's own
`apiserver_request_total`, on the resources the operator uses, which the StatefulSet controller's pod creates and
status updates move too; and from the apiserver's audit log, in which only the operator's identity is logged (it runs
as its own user, `glrt-operator`, the controllers as `admin`): its own requests by verb and resource.

Per window, too, the CPU time each process spent (from /proc: etcd, kube-apiserver, kube-controller-manager, the
operator, and the bench with the fake GitLab), per Runner: where a phase bound by the machine's cores goes. With
GLRT_APISERVER_PROFILING=1 the apiserver serves /debug/pprof (`kubectl get --raw '/debug/pprof/profile?seconds=30'`
with the control plane's admin kubeconfig, read with `go tool pprof`).

Throughout: the operator's peak RSS (from /proc), and the most requests the fake GitLab saw in any 60 s, against
the budget the operator was given (`--budget`). Scale is configurable: `make bench BENCH_ARGS="--runners 200
--slow-runners 100"`. Each run is CPU heavy (control plane, operator and fake GitLab share the machine)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from kubernetes import client  # noqa: E402

from tests.e2e.conftest import GROUP, PAT, PLURAL, PROJECT_ID, VERSION, Runners  # noqa: E402
from tests.fake_gitlab import FakeGitLab  # noqa: E402
from tests.fake_gitlab.faults import Fault  # noqa: E402
from tests.fake_gitlab.state import Call  # noqa: E402
from tests.harness.conditions import ready_for_generation  # noqa: E402
from tests.harness.controlplane import ControlPlane, request_counts  # noqa: E402
from tests.harness.operator import OperatorProcess  # noqa: E402
from tests.harness.runner_pod import EmulatedRunnerPod  # noqa: E402
from tests.harness.waiting import wait_for  # noqa: E402

DEFAULT_RESYNC = 300.0
# Every operator call, not the runner pods' own polls (their limits are per runner, not per user).
OPERATOR_CALLS = r"^/api/v4/(?!jobs/)"


def is_operator_call(call: Call) -> bool:
    return "/jobs/" not in call.path


def is_read(call: Call) -> bool:
    """GET, and GraphQL (the operator sends only queries: its batch reads of runners)."""
    return call.method == "GET" or call.path.endswith("/api/graphql")


def kind(call: Call) -> str:
    return f"{call.method} {re.sub(r'/[0-9]+', '/:id', call.path.split('/api/v4')[-1])}"


def max_per_minute(times: Iterable[datetime]) -> int:
    """The most calls in any 60 s window."""
    window: deque[float] = deque()
    most = 0
    for t in sorted(x.timestamp() for x in times):
        window.append(t)
        while window[0] <= t - 60.0:
            window.popleft()
        most = max(most, len(window))
    return most


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (/proc/PID/stat fields 14 and 15); 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class CpuWindow:
    """The CPU time each process spent in a window: where a phase bound by the machine's cores goes. `pids` is asked
    at both ends (the operator restarts: its new process counts from its start)."""

    def __init__(self, pids: Callable[[], dict[str, int]]):
        self.pids = pids
        self.started = time.monotonic()
        self.start = {name: (pid, cpu_seconds(pid)) for name, pid in pids().items()}

    def report(self, label: str, count: int) -> None:
        seconds = time.monotonic() - self.started
        spent = {}
        for name, pid in self.pids().items():
            was, before = self.start.get(name, (0, 0.0))
            spent[name] = cpu_seconds(pid) - (before if was == pid else 0.0)
        busy = sum(spent.values()) / seconds / (os.cpu_count() or 1)
        each = ", ".join(f"{name} {s:.1f}s ({s * 1000 / count:.0f} ms/Runner)" for name, s in spent.items())
        print(f"  CPU {label} ({seconds:.0f}s, these processes kept {busy:.0%} of {os.cpu_count()} cores busy): {each}")


class RssSampler:
    """Peak resident memory of a process, sampled every second (`pid` asked each time: the operator restarts)."""

    def __init__(self, pid: Callable[[], int]):
        self.pid = pid
        self.peak_kib = 0
        self.last_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                text = Path(f"/proc/{self.pid()}/status").read_text()
            except OSError:
                self._stop.wait(1.0)  # between a stop and the next start
                continue
            match = re.search(r"VmRSS:\s+(\d+) kB", text)
            if match:
                self.last_kib = int(match[1])
                self.peak_kib = max(self.peak_kib, self.last_kib)
            self._stop.wait(1.0)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class Fleet:
    """Runners r0..r{count-1} in one namespace."""

    api: client.ApiClient
    runners: Runners
    count: int
    names: list[str] = field(default_factory=list)
    # One client for every heartbeat (httpx clients are thread-safe): a client each costs an SSL context, which made
    # the heartbeats the bench's largest CPU cost while the fleet was being created.
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))

    def __post_init__(self) -> None:
        self.names = [f"r{i}" for i in range(self.count)]

    def parallel(self, action: Callable[[str], object], names: list[str] | None = None) -> None:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(action, names or self.names))

    def listing(self) -> list[dict[str, Any]]:
        custom = client.CustomObjectsApi(self.api)
        items: list[dict[str, Any]] = custom.list_namespaced_custom_object(
            GROUP, VERSION, self.runners.namespace, PLURAL
        )["items"]
        return items

    def ready(self) -> list[str]:
        return [item["metadata"]["name"] for item in self.listing() if ready_for_generation(item)]

    def wait_all_ready(self, expected: int, timeout: float, poll: bool = False) -> None:
        """Until `expected` Runners are Ready. With `poll`, each one's manager polls once as soon as it is seen Ready,
        as its pod would within seconds of starting: a new Runner's first resync then finds its manager online."""
        # A list of the fleet costs CPU the operator and the apiserver share (5,000 Runners: about 27 MB of JSON to
        # encode and parse), so the bench lists every 2 s per 1,000. The figure is the last Ready condition's own
        # transition time, not when the poll saw it.
        interval = max(2.0, 2.0 * expected / 1000)
        polled: set[str] = set()
        with ThreadPoolExecutor(4) as pool:
            beats: list[Future[None]] = []

            def seen_ready() -> bool:
                names = self.ready()
                if poll:
                    beats.extend(pool.submit(self.beat, name) for name in names if name not in polled)
                    polled.update(names)
                return len(names) >= expected

            wait_for(seen_ready, timeout=timeout, interval=interval, message=f"{expected} Ready")
        for beat in beats:
            beat.result()  # a failed poll fails the bench

    def last_ready_transition(self) -> float:
        """When the last Runner turned Ready (its condition's lastTransitionTime, whole seconds), as a Unix time."""
        times = [
            datetime.fromisoformat(c["lastTransitionTime"].replace("Z", "+00:00")).timestamp()
            for item in self.listing()
            for c in (item.get("status") or {}).get("conditions", [])
            if c["type"] == "Ready" and c["status"] == "True"
        ]
        return max(times)

    def heartbeat(self) -> None:
        """One `POST /jobs/request` per Runner with its token and replica 0's system id, as its pod would."""
        self.parallel(self.beat)

    def beat(self, name: str) -> None:
        EmulatedRunnerPod(self.api, self.runners.namespace, f"{name}-runner-config", 0).poll_once(self.http)


def report_budget(gitlab: FakeGitLab, first: int, budget: int) -> None:
    """The most requests of this run's operator in any 60 s, from the fake GitLab's own log (arrival times)."""
    times = [c.time for c in calls_since(gitlab, first)]
    print(f"  most GitLab requests in any 60 s: {max_per_minute(times)} (budget {budget}/min), {len(times)} in all")


def setup_gitlab(gitlab: FakeGitLab) -> None:
    owner = gitlab.add_user("platform")
    gitlab.add_project(PROJECT_ID, "builds", maintainers=[owner])
    gitlab.add_access_token(PAT, owner, scopes=["api"])


def new_namespace(api: client.ApiClient, gitlab: FakeGitLab, name: str) -> Runners:
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    runners = Runners(api, name, gitlab.url)
    runners.put_secret("gitlab-api", {"token": PAT})
    return runners


def calls_since(gitlab: FakeGitLab, first: int) -> list[Call]:
    return [c for c in gitlab.calls[first:] if is_operator_call(c)]


def operator_env(args: argparse.Namespace, resync: float) -> dict[str, str]:
    env = {
        "GLRT_RESYNC_INTERVAL": str(resync),
        "GLRT_GITLAB_REQUESTS_PER_MINUTE": str(args.budget),
        "GLRT_ERROR_BACKOFF": "5",
        "GLRT_ERROR_BACKOFF_MAX": "60",
        "MALLOC_ARENA_MAX": "2",  # as the operator image sets it (Dockerfile)
        # The production defaults, not the short ones of the test harness (tests/harness/operator.py TEST_ENV).
        "GLRT_BATCH_READ_TTL": "60",
        "GLRT_WATCH_CACHES": "true",
        "GLRT_WATCH_SERVER_TIMEOUT": "300",
    }
    env.update(item.split("=", 1) for item in args.env)
    return env


READ_VERBS = ("GET", "LIST", "WATCH")
# What the operator reads or writes (its RBAC, chart templates/_helpers.tpl); any other resource in the counts is the
# controllers' (kube-controller-manager's informers re-watching, its leader Lease), the only other clients then.
OPERATOR_RESOURCES = {
    *(f"{kind}{sub}" for kind in ("runners", "deploytokens", "gitlabconnections") for sub in ("", "/status")),
    "clustergitlabconnections",
    "clustergitlabconnections/status",
    "secrets",
    "statefulsets",
    "statefulsets/status",
    "pods",
    "events",
    "serviceaccounts",
    "poddisruptionbudgets",
    "rolebindings",
    "localsubjectaccessreviews",
    "namespaces",
}


def apiserver_requests(api: client.ApiClient) -> Counter[tuple[str, str]]:
    """Every request the kube-apiserver has served so far (`apiserver_request_total`), by verb and resource
    (`resource/subresource`)."""
    headers: dict[str, str] = {}
    api.update_params_for_auth(headers, [], ["BearerToken"], "GET", "/metrics", None)
    response = api.call_api("GET", api.configuration.host + "/metrics", header_params=headers)
    response.read()
    counts: Counter[tuple[str, str]] = Counter()
    for line in response.data.decode().splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        resource = labels.get("resource", "?") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
        counts[(labels.get("verb", "?"), resource)] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def report_kube(label: str, diff: Counter[tuple[str, str]], seconds: float, count: int) -> None:
    """The Kubernetes requests of a window on the resources the operator uses, per Runner per hour, reads and writes
    apart, by verb and resource; the rest (the controllers') summed apart."""
    ours = Counter({k: v for k, v in diff.items() if v > 0 and k[1] in OPERATOR_RESOURCES})
    others = sum(v for k, v in diff.items() if v > 0 and k[1] not in OPERATOR_RESOURCES)
    source = f"apiserver_request_total over {seconds:.0f}s, the operator's resources"
    print_requests(
        f"Kubernetes requests {label} ({source})",
        ours,
        READ_VERBS,
        seconds,
        count,
        f"; {others} on other resources (the controllers')",
    )


def report_audit(label: str, cp: ControlPlane, start: int, seconds: float, count: int, logs: Path) -> None:
    """The operator's own requests of a window (the audit log, its identity only), reads and writes apart; and what
    its Runner status patches changed (the audit log keeps their bodies), which go to `logs` too."""
    end = cp.audit_offset()
    events = cp.audit_events(start, end)  # read and parsed once: a fleet's creation logs over 100,000
    ours = request_counts(events)
    source = f"audit log, user glrt-operator, {seconds:.0f}s"
    print_requests(
        f"the operator's own Kubernetes requests {label} ({source})", ours, ("get", "list", "watch"), seconds, count
    )
    # Between windows: not reported, but the statuses follow.
    STATUSES.replay(status_patches(cp.audit_events(min(STATUSES.offset, start), start)))
    patches = status_patches(events)
    STATUSES.offset = end
    with (logs / f"status-patches-{label.replace(' ', '-')}.jsonl").open("w") as out:
        out.writelines(json.dumps(e) + "\n" for e in patches)
    changed = STATUSES.replay(patches)
    print(f"  status patches {label}: {len(patches)}, the fields they changed: {dict(changed.most_common())}")


def status_patches(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Runner status patches among audit events: the only ones logged with their bodies (AUDIT_POLICY)."""
    return [e for e in events if e.get("requestObject") is not None]


def merged(target: Any, patch: Any) -> Any:
    """A JSON merge patch (RFC 7386) applied to `target`."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merged(result.get(key), value)
    return result


def flattened(value: Any, path: str = "") -> set[tuple[str, str]]:
    """(path, value) leaves; a list item named by its `type` or `ordinal` where it has one."""
    if isinstance(value, dict):
        return {leaf for key, item in value.items() for leaf in flattened(item, f"{path}.{key}")}
    if isinstance(value, list):
        return {
            leaf
            for i, item in enumerate(value)
            for leaf in flattened(
                item, f"{path}[{item.get('type', item.get('ordinal', i)) if isinstance(item, dict) else i}]"
            )
        }
    return {(path, json.dumps(value))}


@dataclass
class StatusReplay:
    """Each Runner's status as the operator's patches left it (the audit log keeps their bodies since creation)."""

    statuses: dict[str, Any] = field(default_factory=dict)
    offset: int = 0  # how far into the audit log the statuses follow

    def replay(self, patches: list[dict[str, Any]]) -> Counter[str]:
        """Apply the patches in order; what each changed, by path."""
        changed: Counter[str] = Counter()
        for event in patches:
            ref = event.get("objectRef") or {}
            key = f"{ref.get('namespace')}/{ref.get('name')}"
            before = self.statuses.get(key, {})
            after = merged(before, event["requestObject"].get("status", {}))
            self.statuses[key] = after
            paths = {path for path, _ in flattened(before) ^ flattened(after)}
            changed.update(paths or {"(nothing)"})
        return changed


STATUSES = StatusReplay()


def print_requests(
    what: str, counts: Counter[tuple[str, str]], read_verbs: tuple[str, ...], seconds: float, count: int, tail: str = ""
) -> None:
    """One window's requests: reads and writes, per Runner per hour, and each (verb, resource)."""
    reads = sum(n for (verb, _), n in counts.items() if verb in read_verbs)
    writes = sum(counts.values()) - reads
    per_hour = 3600 / seconds / max(count, 1)
    detail = ", ".join(f"{verb} {resource}: {n}" for (verb, resource), n in sorted(counts.items()))
    print(
        f"  {what}: {reads} reads, {writes} writes; per Runner per hour {reads * per_hour:.3f} reads, "
        f"{writes * per_hour:.3f} writes: {{{detail}}}{tail}",
        flush=True,
    )


# Well below the 10 minutes after which the operator checks the token of a silent manager, leaving room for the
# time one heartbeat of the whole fleet takes.
HEARTBEAT_SECONDS = 240.0


def resumed(operator: OperatorProcess) -> int:
    """How many objects the operator's current run has resumed (Kopf logs each once it is done)."""
    return operator.logs[-1].read_bytes().count(b"Resuming is processed")


def split(calls: list[Call]) -> tuple[list[Call], list[Call]]:
    reads = [c for c in calls if is_read(c)]
    return reads, [c for c in calls if not is_read(c)]


def wait_quiet(gitlab: FakeGitLab, quiet: float, most: float) -> None:
    """Until the operator has sent GitLab nothing for `quiet` seconds (at most `most`)."""
    deadline = time.monotonic() + most
    seen, since = len(gitlab.calls), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet:
        time.sleep(1.0)
        if len(calls_since(gitlab, seen)):
            seen, since = len(gitlab.calls), time.monotonic()


def fleet_run(cp: ControlPlane, gitlab: FakeGitLab, args: argparse.Namespace, logs: Path) -> RssSampler:
    first_call = len(gitlab.calls)
    count = args.runners
    # Long enough that one resync of every Runner (two reads each) fits in 80% of the budget.
    resync = args.resync or max(30.0, round(2 * count * 60 / (0.8 * args.budget)))
    api = cp.api_client()
    runners = new_namespace(api, gitlab, f"fleet-{int(time.time())}")
    fleet = Fleet(api, runners, count)
    gitlab.faults.add(Fault(path=OPERATOR_CALLS, kind="latency", seconds=args.latency))
    print(
        f"\n== fleet: {count} Runners, GitLab at {args.latency * 1000:.0f} ms, budget {args.budget}/min, "
        f"resync every {resync:.0f}s",
        flush=True,
    )
    # As its own user: the audit log attributes its requests (the controllers run as the admin).
    operator = OperatorProcess(cp.operator_kubeconfig, runners.namespace, logs, env=operator_env(args, resync))

    def operator_pid() -> int:  # asked each time: the operator restarts
        return operator.process.pid if operator.process else 0

    def pids() -> dict[str, int]:  # the fake GitLab runs in the bench's own process
        return {**cp.pids(), "operator": operator_pid(), "bench": os.getpid()}

    with operator, RssSampler(operator_pid) as rss:
        first = len(gitlab.calls)
        kube_before, audit, cpu = apiserver_requests(api), cp.audit_offset(), CpuWindow(pids)
        started, wall = time.monotonic(), time.time()
        fleet.parallel(lambda name: runners.create(runners.manifest(name=name, replicas=1)))
        created = time.monotonic() - started
        fleet.wait_all_ready(count, timeout=args.timeout, poll=True)
        ready = time.monotonic()
        to_ready = fleet.last_ready_transition() - wall  # not the polling time: the condition's own timestamp
        creating = calls_since(gitlab, first)
        kube_diff = apiserver_requests(api)
        kube_diff.subtract(kube_before)
        bound = count / args.budget * 60
        print(
            f"  all {count} Ready after {to_ready:.1f}s (creates sent in {created:.1f}s; the budget allows "
            f"{bound:.0f}s, +10% = {bound * 1.1:.0f}s); {len(creating) / count:.2f} GitLab calls per Runner: "
            f"{dict(Counter(map(kind, creating)))}"
        )
        report_kube("creating", kube_diff, time.monotonic() - started, count)
        report_audit("creating", cp, audit, time.monotonic() - started, count, logs)
        cpu.report("creating", count)
        print(f"  operator RSS after creation: {rss.last_kib / 1024:.0f} MiB", flush=True)

        fleet.heartbeat()
        polled = time.monotonic()
        # At rest only once every Runner has resynced since its manager first polled (it then shows online, a change
        # worth writing): one interval after that poll, and after every first resync (one interval plus its phase,
        # under one interval, after the Runner was seen; the last was seen when all were Ready).
        at_rest = max(ready + 2 * resync, polled + resync) + 10
        # Meanwhile the managers poll every few minutes, and once more before the window, as pods would every few
        # seconds: a manager silent for 10 minutes has its token checked.
        while True:
            left = at_rest - time.monotonic()
            time.sleep(min(max(left, 0.0), HEARTBEAT_SECONDS))
            fleet.heartbeat()
            if left <= HEARTBEAT_SECONDS:
                break
        first = len(gitlab.calls)
        kube_before, window, audit = apiserver_requests(api), time.monotonic(), cp.audit_offset()
        cpu = CpuWindow(pids)
        time.sleep(resync)  # one interval: every Runner resyncs once (unless the pacing stretches it)
        kube_diff = apiserver_requests(api)
        kube_diff.subtract(kube_before)
        window = time.monotonic() - window
        steady = calls_since(gitlab, first)
        reads, writes = split(steady)
        per_hour = 3600 / resync / count
        print(
            f"  at rest, one {resync:.0f}s interval: {len(reads)} GitLab reads, {len(writes)} writes: "
            f"{dict(Counter(map(kind, steady)))}"
        )
        print(
            f"  per Runner per resync: {len(reads) / count:.3f} reads, {len(writes) / count:.3f} writes; per Runner "
            f"per hour: {len(reads) * per_hour:.2f} reads, {len(writes) * per_hour:.2f} writes"
        )
        per_minute = len(steady) / resync * 60
        print(
            f"  fleet at rest: {len(reads) / resync * 60:.0f} GitLab reads/min, {len(writes) / resync * 60:.0f} "
            f"writes/min ({per_minute:.0f} calls/min, a tenth of the budget is {args.budget / 10:.0f})"
        )
        report_kube("at rest", kube_diff, window, count)
        report_audit("at rest", cp, audit, window, count, logs)
        cpu.report("at rest", count)
        print(f"  operator RSS at rest: {rss.last_kib / 1024:.0f} MiB", flush=True)

        if "restart" not in args.skip:
            operator.stop()
            first = len(gitlab.calls)
            kube_before, window, audit = apiserver_requests(api), time.monotonic(), cp.audit_offset()
            started, cpu = time.monotonic(), CpuWindow(pids)
            operator.start()
            wait_quiet(gitlab, quiet=20.0, most=resync)
            # GitLab is quiet long before the last resume is done (they are Kubernetes-bound): the window ends once
            # Kopf logged every Runner's resume, not with resumes still running.
            wait_for(lambda: resumed(operator) >= count, timeout=resync, interval=2.0, message=f"{count} resumed")
            all_resumed = time.monotonic() - started
            kube_diff = apiserver_requests(api)
            kube_diff.subtract(kube_before)
            window = time.monotonic() - window
            restarted = calls_since(gitlab, first)
            r_reads, r_writes = split(restarted)
            print(
                f"  restart: {len(r_reads)} GitLab reads (one paced resync at rest: {len(reads)}), "
                f"{len(r_writes)} writes, all {count} resumed after {all_resumed:.0f}s: "
                f"{dict(Counter(map(kind, restarted)))}"
            )
            report_kube("over the restart", kube_diff, window, count)
            report_audit("over the restart", cp, audit, window, count, logs)
            cpu.report("over the restart", count)
            fleet.wait_all_ready(count, timeout=args.timeout)

        if "edit" not in args.skip:
            fleet.heartbeat()  # keep the managers' contact recent across the next phases
            first = len(gitlab.calls)
            kube_before, audit = apiserver_requests(api), cp.audit_offset()
            started, cpu = time.monotonic(), CpuWindow(pids)
            fleet.parallel(lambda name: runners.patch_spec(name, description=f"edited {name}"))
            fleet.wait_all_ready(count, timeout=args.timeout)
            edited = calls_since(gitlab, first)
            kube_diff = apiserver_requests(api)
            kube_diff.subtract(kube_before)
            print(
                f"  spec edit of all: Ready after {time.monotonic() - started:.1f}s (the budget allows {bound:.0f}s); "
                f"{len(edited) / count:.2f} calls per Runner: {dict(Counter(map(kind, edited)))}"
            )
            report_kube("editing", kube_diff, time.monotonic() - started, count)
            report_audit("editing", cp, audit, time.monotonic() - started, count, logs)
            cpu.report("editing", count)

        if "delete" not in args.skip:
            first = len(gitlab.calls)
            started = time.monotonic()
            fleet.parallel(runners.delete)
            wait_for(lambda: not fleet.listing(), timeout=args.timeout, interval=1.0, message="all Runners deleted")
            deleting = calls_since(gitlab, first)
            print(
                f"  delete of all: gone after {time.monotonic() - started:.1f}s, {len(gitlab.runners)} left in "
                f"GitLab; {dict(Counter(f'{kind(c)} {c.status}' for c in deleting))}"
            )
        print(f"  operator RSS peak: {rss.peak_kib / 1024:.0f} MiB", flush=True)
    gitlab.faults.clear()
    report_budget(gitlab, first_call, args.budget)
    return rss


def slow_run(cp: ControlPlane, gitlab: FakeGitLab, args: argparse.Namespace, logs: Path) -> RssSampler:
    first_call = len(gitlab.calls)
    count, resync = args.slow_runners, args.slow_resync
    api = cp.api_client()
    runners = new_namespace(api, gitlab, f"slow-{int(time.time())}")
    fleet = Fleet(api, runners, count)
    gitlab.faults.add(Fault(path=OPERATOR_CALLS, kind="latency", seconds=args.latency))
    print(
        f"\n== slow GitLab: {count} Runners resyncing every {resync:.0f}s, then GitLab at {args.slow_latency:.1f}s",
        flush=True,
    )
    operator = OperatorProcess(cp.operator_kubeconfig, runners.namespace, logs, env=operator_env(args, resync))
    with operator, RssSampler(lambda: operator.process.pid if operator.process else 0) as rss:
        fleet.parallel(lambda name: runners.create(runners.manifest(name=name, replicas=1)))
        created = time.monotonic()
        fleet.wait_all_ready(count, timeout=args.timeout)
        fleet.heartbeat()
        gitlab.faults.clear()
        gitlab.faults.add(Fault(path=OPERATOR_CALLS, kind="latency", seconds=args.slow_latency))
        first = len(gitlab.calls)
        # A Runner's first resync comes one interval plus its phase (< one interval) after it was seen: from then
        # on every timer has fired, and each Runner has a resync queued or in flight.
        waited = max(resync, created + 2 * resync + 5 - time.monotonic())
        time.sleep(waited)
        backlog = calls_since(gitlab, first)
        started = time.monotonic()
        runners.create(runners.manifest(name="newcomer", replicas=1))
        runners.wait_ready("newcomer", timeout=args.timeout)
        print(
            f"  new Runner Ready after {time.monotonic() - started:.1f}s while {count} Runners resync against a "
            f"{args.slow_latency:.1f}s GitLab ({len(backlog)} resync calls answered in the {resync + 5:.0f}s before)"
        )
        print(f"  operator RSS peak: {rss.peak_kib / 1024:.0f} MiB", flush=True)
    gitlab.faults.clear()
    report_budget(gitlab, first_call, args.budget)
    return rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runners", type=int, default=1000, help="Runners of the fleet run (0: skip it)")
    parser.add_argument("--slow-runners", type=int, default=500, help="Runners of the slow-GitLab run (0: skip it)")
    parser.add_argument("--budget", type=int, default=1200, help="GLRT_GITLAB_REQUESTS_PER_MINUTE")
    parser.add_argument("--latency", type=float, default=0.05, help="GitLab's answer time (s) in the fleet run")
    parser.add_argument("--slow-latency", type=float, default=2.0, help="GitLab's answer time (s) when slow")
    parser.add_argument("--resync", type=float, default=0.0, help="fleet resync interval (0: fit the budget)")
    parser.add_argument("--slow-resync", type=float, default=20.0, help="resync interval of the slow run")
    parser.add_argument("--timeout", type=float, default=900.0, help="patience for each phase (s)")
    parser.add_argument("--env", action="append", default=[], help="extra operator setting, e.g. GLRT_WORKERS=32")
    parser.add_argument(
        "--skip", action="append", default=[], choices=["restart", "edit", "delete"], help="a phase of the fleet run"
    )
    parser.add_argument("--logs", default="", help="keep the operator logs in this directory")
    args = parser.parse_args()
    peaks: list[int] = []
    with (
        ControlPlane(audit_log=True) as cp,
        FakeGitLab().running() as gitlab,
        tempfile.TemporaryDirectory() as scratch,
    ):
        logs = args.logs or scratch
        Path(logs).mkdir(parents=True, exist_ok=True)
        cp.install_crds(REPO / "crds")
        setup_gitlab(gitlab)
        if args.runners:
            peaks.append(fleet_run(cp, gitlab, args, Path(logs)).peak_kib)
        if args.slow_runners:
            peaks.append(slow_run(cp, gitlab, args, Path(logs)).peak_kib)
        print(f"\noperator RSS peak over the runs: {max(peaks, default=0) / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
