"""A throwaway Kubernetes control plane on loopback: etcd, kube-apiserver (RBAC), kube-controller-manager.

The Kubernetes version is the pinned one unless ``ControlPlane(kubernetes_version=...)`` or $GLRT_KUBERNETES_VERSION
selects the oldest supported minor (see tests/harness/binaries.py); flags an older binary lacks are left out.

There is no kubelet or scheduler, so pods are created (by the StatefulSet controller, say) but stay Pending.
Everything -- etcd data, certificates, kubeconfigs, logs -- lives in one temporary directory that stop()
removes (set GLRT_KEEP_CONTROLPLANE=1 to keep it for debugging).
"""

from __future__ import annotations

import atexit
import base64
import collections
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from kubernetes import client

from tests.harness import binaries

COMPONENTS = ("etcd", "apiserver", "controller-manager")

# What the operator's tests rely on: cascading deletion (ownerReferences), StatefulSet pods, namespace
# deletion, the "default" ServiceAccount (pods are rejected without it) and kube-root-ca.crt; the chart's
# operator Deployment (on a node). Fewer controllers means less CPU and a faster start on small machines.
DEFAULT_CONTROLLERS = (
    "garbage-collector-controller",
    "statefulset-controller",
    "deployment-controller",
    "replicaset-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
)

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"

# Gate -> the first (major, minor) that knows it: an apiserver or controller-manager refuses to start on an unknown
# gate. MaxUnavailableStatefulSet (alpha since 1.24, beta in 1.35 but off by default) lets a StatefulSet roll every
# replica at once, so one replica draining a long job does not hold back the others' rollout (the operator sets
# maxUnavailable; without the gate it is ignored).
FEATURE_GATES_SINCE = {"MaxUnavailableStatefulSet": (1, 24)}


def feature_gates_flag(kubernetes_version: str) -> list[str]:
    """The --feature-gates flag for a component of ``kubernetes_version``: only the gates it knows."""
    minor = binaries.minor_version(kubernetes_version)
    gates = [f"{gate}=true" for gate, since in FEATURE_GATES_SINCE.items() if minor >= since]
    return [f"--feature-gates={','.join(gates)}"] if gates else []


# The operator's own identity (static token, system:masters like the admin): the controllers run as "admin", so
# the audit log can tell the operator's requests from theirs (the fleet bench attributes writes with it).
OPERATOR_USER = "glrt-operator"
# Metadata (who, verb, resource; no bodies, so no secrets) of the operator's requests only, one event per request:
# RequestReceived omitted, a watch logged when its response starts and again when it ends. A Runner status patch is
# logged with its body (a status holds names and times, never a credential): the bench tells what each one changed.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {
            "level": "Request",
            "users": [OPERATOR_USER],
            "verbs": ["patch"],
            "resources": [{"group": "glrt.dev", "resources": ["runners/status"]}],
        },
        {"level": "Metadata", "users": [OPERATOR_USER]},
        {"level": "None"},
    ],
}


def request_counts(events: Sequence[dict[str, Any]]) -> collections.Counter[tuple[str, str]]:
    """Audit events by verb and `resource/subresource`; a watch counted once, when its response started."""
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    for event in events:
        if event.get("stage") == "ResponseComplete" and event.get("verb") == "watch":
            continue
        ref = event.get("objectRef") or {}
        resource = ref.get("resource", event.get("requestURI", "?").split("?")[0])
        resource += f"/{ref['subresource']}" if ref.get("subresource") else ""
        counts[(event.get("verb", "?"), resource)] += 1
    return counts


START_DEADLINES = {"etcd": 30.0, "apiserver": 120.0, "controller-manager": 60.0}
STOP_DEADLINE = 10.0
LOG_TAIL_LINES = 50

_PR_SET_PDEATHSIG = 1
try:  # loaded before any fork: the child must not dlopen between fork and exec
    _libc: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _libc = None


def _die_with_parent() -> None:
    # atexit does not run if the test process is SIGKILLed (e.g. by a CI timeout); the kernel then kills
    # the components for us. Caveat: the signal fires when the *thread* that started them exits.
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_DIR_PREFIX = "glrt-cp-"
_OWNER_FILE = "owner.pid"


def _sweep_stale_dirs(parent: Path) -> None:
    # A SIGKILLed test run cannot remove its directory (over 100 MB: etcd preallocates its WAL); the next
    # run removes the directories whose owning process is gone.
    for candidate in parent.glob(f"{_DIR_PREFIX}*"):
        try:
            os.kill(int((candidate / _OWNER_FILE).read_text()), 0)
        except ProcessLookupError:
            shutil.rmtree(candidate, ignore_errors=True)
        except (OSError, ValueError):
            continue  # not ours, unreadable, or the owner is alive but not ours to signal


class ControlPlaneError(RuntimeError):
    """A component failed to start; the message carries the tail of its log."""

    def __init__(self, message: str, *, port_clash: bool = False) -> None:
        super().__init__(message)
        self.port_clash = port_clash


class CommandError(subprocess.CalledProcessError):
    """CalledProcessError whose message includes the output, so a failing kubectl/helm explains itself."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def _free_ports(count: int) -> list[int]:
    # Keep all sockets open until every port is picked so the ports are distinct.
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open(errors="replace") as f:
            return "".join(collections.deque(f, maxlen=lines))
    except FileNotFoundError:
        return "(no log)"


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager as local processes; see the module docstring."""

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        controllers: Sequence[str] = DEFAULT_CONTROLLERS,
        extra_ips: Sequence[str] = (),
        advertise_address: str | None = None,
        kubernetes_version: str | None = None,
        audit_log: bool = False,
    ) -> None:
        self._workdir = workdir
        # An audit log of the operator's requests (AUDIT_POLICY): off by default, it costs a write per request.
        self.audit_log = audit_log
        # v1.35.4 etc.; the kubelet and scheduler of a node for this control plane are of the same version.
        self.kubernetes_version = binaries.kubernetes_version(kubernetes_version)
        # More addresses the serving certificate is valid for (a node's pods reach the apiserver through one).
        self._extra_ips = tuple(extra_ips)
        # For a control plane with a node: the apiserver listens on every address and advertises this one (the
        # node's bridge gateway), so the `kubernetes` Service's endpoints point where pods reach it, as in a real
        # cluster. None keeps it on loopback, with no endpoints for that Service (no node, no pod needs them).
        self.advertise_address = advertise_address
        if advertise_address is not None and advertise_address not in self._extra_ips:
            self._extra_ips += (advertise_address,)
        self._controllers = tuple(controllers)
        if advertise_address is not None and "endpointslice-controller" not in self._controllers:
            # With a node, kube-proxy routes every Service with a selector to its pods' EndpointSlices.
            self._controllers += ("endpointslice-controller",)
        self._base: Path | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._final_logs: dict[str, str] = {}
        self._admin_token = secrets.token_urlsafe(32)
        self._operator_token = secrets.token_urlsafe(32)
        self._bin: dict[str, Path] = {}
        self.server = ""
        self.etcd_url = ""
        self.startup_seconds: float | None = None

    # ----------------------------------------------------------------------------------------------- paths

    @property
    def dir(self) -> Path:
        if self._base is None:
            raise ControlPlaneError("the control plane is not started")
        return self._base

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "admin.kubeconfig"

    @property
    def operator_kubeconfig(self) -> Path:
        """A kubeconfig as OPERATOR_USER (system:masters): the operator's requests apart from the controllers'."""
        return self.dir / "kubeconfigs" / "operator.kubeconfig"

    @property
    def audit_log_path(self) -> Path:
        return self._log_path("audit")

    @property
    def ca_file(self) -> Path:
        return self.dir / "pki" / "ca.crt"

    def _pki(self, name: str) -> Path:
        return self.dir / "pki" / name

    def _log_path(self, component: str) -> Path:
        return self.dir / "logs" / f"{component}.log"

    # ------------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._base is not None:
            raise ControlPlaneError("start() called twice; create a new ControlPlane instead")
        started = time.monotonic()
        # Before the temp dir exists: this may build the binaries (long) or fail with a clear message.
        for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl", "helm"):
            self._bin[name] = binaries.binary(name, kubernetes_version=self.kubernetes_version)
        if self._workdir is not None:
            self._workdir.mkdir(parents=True, exist_ok=True)
        _sweep_stale_dirs(Path(self._workdir or tempfile.gettempdir()))
        self._base = Path(tempfile.mkdtemp(prefix=_DIR_PREFIX, dir=self._workdir))
        (self._base / _OWNER_FILE).write_text(str(os.getpid()))
        atexit.register(self.stop)
        try:
            for sub in ("pki", "logs", "etcd", "kubeconfigs", "kubectl-cache", "helm"):
                (self.dir / sub).mkdir(mode=0o700)
            self._write_credentials()
            for attempt in range(3):
                try:
                    self._launch()
                    break
                except ControlPlaneError as exc:
                    # Free ports are picked by binding to port 0 and released before the component binds
                    # them, so another process can take one in between: retry with new ports.
                    if not exc.port_clash or attempt == 2:
                        raise
                    self._terminate()
                    shutil.rmtree(self.dir / "etcd")
                    (self.dir / "etcd").mkdir(mode=0o700)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        """Terminate every component (SIGTERM, then SIGKILL after a deadline) and remove the temp dir."""
        if self._base is None:
            return
        self._terminate()
        for component in COMPONENTS:  # logs() keeps working after the directory is gone
            path = self._log_path(component)
            if path.exists():
                self._final_logs[component] = path.read_text(errors="replace")
        if os.environ.get("GLRT_KEEP_CONTROLPLANE"):
            print(f"control plane: keeping {self._base}", file=sys.stderr)
        else:
            shutil.rmtree(self._base, ignore_errors=True)
        self._base = None
        atexit.unregister(self.stop)

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _terminate(self) -> None:
        # Controller-manager and apiserver first (they talk to etcd while shutting down), etcd last.
        for group in (("controller-manager", "apiserver"), ("etcd",)):
            procs = [self._procs.pop(name) for name in group if name in self._procs]
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            deadline = time.monotonic() + STOP_DEADLINE
            for proc in procs:
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def pids(self) -> dict[str, int]:
        """PIDs of the running components (for tests of the harness itself, and the bench's CPU figures)."""
        return {name: proc.pid for name, proc in self._procs.items()}

    def logs(self, component: str) -> str:
        """Full log of ``etcd``, ``apiserver`` or ``controller-manager`` (also after stop())."""
        if component not in COMPONENTS:
            raise ValueError(f"unknown component {component!r}; known: {', '.join(COMPONENTS)}")
        if self._base is not None and self._log_path(component).exists():
            return self._log_path(component).read_text(errors="replace")
        return self._final_logs.get(component, "")

    # ---------------------------------------------------------------------------------------- credentials

    def _openssl(self, *args: str) -> None:
        result = subprocess.run(["openssl", *args], check=False, capture_output=True, text=True, cwd=self.dir / "pki")
        if result.returncode != 0:
            raise ControlPlaneError(f"openssl {' '.join(args)} failed:\n{result.stderr}")

    def _write_credentials(self) -> None:
        # A CA and a serving cert for 127.0.0.1/localhost, so clients verify TLS instead of skipping it.
        ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
        self._openssl(
            "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "7",
            "-subj", "/CN=glrt-test-ca",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        self._openssl("req", "-new", *ec, "-keyout", "serving.key", "-out", "serving.csr", "-subj", "/CN=127.0.0.1")
        self._pki("serving.ext").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
            "DNS:kubernetes.default.svc,IP:10.0.0.1" + "".join(f",IP:{ip}" for ip in self._extra_ips) + "\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid,issuer\n"
        )
        self._openssl(
            "x509", "-req", "-in", "serving.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-set_serial", f"0x{secrets.token_hex(16)}", "-days", "7",
            "-extfile", "serving.ext", "-out", "serving.crt",
        )  # fmt: skip
        # Signs ServiceAccount tokens (TokenRequest API, legacy token Secrets).
        self._openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key")
        self._openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub")
        # Static tokens for the admin and the operator; system:masters bypasses RBAC.
        self._pki("tokens.csv").write_text(
            f'{self._admin_token},admin,admin,"system:masters"\n'
            f'{self._operator_token},{OPERATOR_USER},{OPERATOR_USER},"system:masters"\n'
        )
        if self.audit_log:
            self._pki("audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY, sort_keys=False))

    def _write_kubeconfig(self, path: Path, user: str, token: str, namespace: str = "default") -> Path:
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "glrt-test",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [
                {
                    "name": "glrt-test",
                    "context": {"cluster": "glrt-test", "user": user, "namespace": namespace},
                }
            ],
            "current-context": "glrt-test",
        }
        path.write_text(yaml.safe_dump(kubeconfig, sort_keys=False))
        path.chmod(0o600)
        return path

    # --------------------------------------------------------------------------------------------- launch

    def _launch(self) -> None:
        etcd_client, etcd_peer, api_port, kcm_port = _free_ports(4)
        self.server = f"https://127.0.0.1:{api_port}"
        self._write_kubeconfig(self.kubeconfig, "admin", self._admin_token)
        self._write_kubeconfig(self.operator_kubeconfig, OPERATOR_USER, self._operator_token)
        self.etcd_url = etcd_url = f"http://127.0.0.1:{etcd_client}"
        peer_url = f"http://127.0.0.1:{etcd_peer}"

        self._spawn(
            "etcd",
            [
                str(self._bin["etcd"]),
                "--name=glrt-test",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=glrt-test={peer_url}",
                "--unsafe-no-fsync",  # throwaway data: durability costs only time
                "--log-level=warn",
            ],
        )
        self._wait_ready("etcd", etcd_url, ("/readyz", "/livez"))

        pki = self.dir / "pki"
        audit = []
        if self.audit_log:
            audit = [
                f"--audit-policy-file={pki / 'audit-policy.yaml'}",
                f"--audit-log-path={self.audit_log_path}",
                "--audit-log-format=json",
                "--audit-log-mode=blocking",  # written before the response: a window's log is complete at its end
                # Offsets into the one file delimit windows: no rotation (0 would mean lumberjack's default, 100 MB).
                "--audit-log-maxsize=1000000",
            ]
        if self.advertise_address is None:
            # Loopback addresses are invalid in Endpoints; with no pods running nothing needs them.
            addresses = ["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none"]
        else:
            # The apiserver's lease reconciler writes the `kubernetes` Endpoints and EndpointSlice with this address.
            addresses = [
                "--bind-address=0.0.0.0",
                f"--advertise-address={self.advertise_address}",
                "--endpoint-reconciler-type=lease",
            ]
        self._spawn(
            "apiserver",
            [
                str(self._bin["kube-apiserver"]),
                f"--etcd-servers={etcd_url}",
                f"--secure-port={api_port}",
                *addresses,
                f"--cert-dir={pki}",  # unused with explicit certs, but keeps it out of /var/run/kubernetes
                f"--tls-cert-file={pki / 'serving.crt'}",
                f"--tls-private-key-file={pki / 'serving.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--authorization-mode=RBAC",
                f"--token-auth-file={pki / 'tokens.csv'}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--api-audiences={SERVICE_ACCOUNT_ISSUER}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--enable-priority-and-fairness=false",
                # On for a profile of a bench (scripts/benchmark.py): /debug/pprof, which admins may read.
                "--profiling=" + ("true" if os.environ.get("GLRT_APISERVER_PROFILING") else "false"),
                *audit,
                *feature_gates_flag(self.kubernetes_version),
            ],
        )
        self._wait_ready("apiserver", self.server, ("/readyz", "/livez"))

        self._spawn(
            "controller-manager",
            [
                str(self._bin["kube-controller-manager"]),
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                f"--controllers={','.join(self._controllers)}",
                "--use-service-account-credentials=false",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'serving.crt'}",
                f"--tls-private-key-file={pki / 'serving.key'}",
                "--profiling=false",
                *feature_gates_flag(self.kubernetes_version),
            ],
        )
        # kube-controller-manager serves no /readyz or /livez; its /healthz includes one check per controller.
        self._wait_ready("controller-manager", f"https://127.0.0.1:{kcm_port}", ("/healthz",))
        if "serviceaccount-controller" in self._controllers:
            # /healthz only says the server is up; a "default" ServiceAccount proves controllers are running
            # (and pods in the "default" namespace are admitted).
            self._wait_until(
                "controller-manager",
                lambda: self._get(f"{self.server}/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
                "the ServiceAccount default/default to be created",
            )

    def _spawn(self, component: str, argv: list[str]) -> None:
        with self._log_path(component).open("ab") as log:
            self._procs[component] = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,  # a Ctrl-C aimed at pytest must not kill them before stop() runs
                preexec_fn=_die_with_parent,  # noqa: PLW1509 -- only calls prctl, safe after fork
            )

    def _get(self, url: str) -> tuple[int, str]:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self._admin_token}"})
        context = ssl.create_default_context(cafile=str(self.ca_file)) if url.startswith("https") else None
        try:
            with urllib.request.urlopen(request, timeout=5, context=context) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")
        except (OSError, ssl.SSLError) as exc:
            return 0, str(exc)

    def _wait_ready(self, component: str, base_url: str, paths: Sequence[str]) -> None:
        def ready() -> bool:
            return all(self._get(base_url + path)[0] == 200 for path in paths)

        self._wait_until(component, ready, f"{', '.join(paths)} on {base_url} to return 200")

    def _wait_until(self, component: str, predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_DEADLINES[component]
        proc = self._procs[component]
        while not predicate():
            code = proc.poll()
            if code is not None or time.monotonic() > deadline:
                reason = f"exited with code {code}" if code is not None else "timed out"
                tail = _tail(self._log_path(component))
                raise ControlPlaneError(
                    f"{component} did not become ready ({reason} waiting for {what}); "
                    f"last {LOG_TAIL_LINES} log lines:\n{tail}",
                    port_clash="address already in use" in tail,
                )
            time.sleep(0.1)

    # -------------------------------------------------------------------------------------------- clients

    def api_client(self) -> client.ApiClient:
        """A new admin ApiClient (the caller closes it)."""
        configuration = client.Configuration(
            host=self.server,
            api_key={"BearerToken": self._admin_token},
            api_key_prefix={"BearerToken": "Bearer"},
            ssl_ca_cert=str(self.ca_file),
        )
        return client.ApiClient(configuration)

    def audit_offset(self) -> int:
        """Where the audit log's last complete line ends now: the start (or end) of a window for audit_requests().
        The apiserver may be half-way through writing a line; that line belongs to the next window."""
        if not self.audit_log_path.exists():
            return 0
        with self.audit_log_path.open("rb") as log:
            size = log.seek(0, os.SEEK_END)
            tail = max(0, size - (1 << 20))
            log.seek(tail)
            return tail + log.read().rfind(b"\n") + 1

    def audit_events(self, start: int, end: int | None = None) -> list[dict[str, Any]]:
        """The audit events logged between two audit_offset()s."""
        if not self.audit_log:
            raise ControlPlaneError("the audit log is off: ControlPlane(audit_log=True)")
        with self.audit_log_path.open("rb") as log:
            log.seek(start)
            data = log.read() if end is None else log.read(end - start)
        return [json.loads(line) for line in data.splitlines()]

    def audit_requests(self, start: int, end: int | None = None) -> collections.Counter[tuple[str, str]]:
        """The operator's requests logged between two audit_offset()s (`request_counts`)."""
        return request_counts(self.audit_events(start, end))

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        as_user: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl (admin kubeconfig unless ``kubeconfig`` is given; ``as_user`` adds --as)."""
        argv = [
            str(self._bin["kubectl"]),
            f"--kubeconfig={kubeconfig or self.kubeconfig}",
            f"--cache-dir={self.dir / 'kubectl-cache'}",
        ]
        if as_user is not None:
            argv.append(f"--as={as_user}")
        return self._run([*argv, *args], input=input, check=check, timeout=timeout)

    def stored_api_version(self, group: str, plural: str, namespace: str, name: str) -> str:
        """The apiVersion an object is stored in, read from etcd itself (its v3 JSON gateway): what the API server
        wrote, whichever version a client asks for."""
        key = f"/registry/{group}/{plural}/{namespace}/{name}".encode()
        body = json.dumps({"key": base64.b64encode(key).decode()}).encode()
        with urllib.request.urlopen(f"{self.etcd_url}/v3/kv/range", data=body, timeout=10) as answer:
            (kv,) = json.load(answer)["kvs"]
        stored: str = json.loads(base64.b64decode(kv["value"]))["apiVersion"]
        return stored

    def install_crds(self, directory: Path, timeout: float = 60.0) -> list[str]:
        """Server-side apply every CRD file in ``directory`` and wait until each is Established and served;
        returns their names. Polled: `kubectl wait` fails outright on a CRD whose status has no conditions yet."""
        files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml"))
        names: list[str] = []
        for path in files:
            self.kubectl("apply", "--server-side", "--field-manager=glrt-tests", "-f", str(path))
            with path.open() as f:
                names += [
                    d["metadata"]["name"]
                    for d in yaml.safe_load_all(f)
                    if d and d.get("kind") == "CustomResourceDefinition"
                ]
        jsonpath = '{.status.conditions[?(@.type=="Established")].status}'
        deadline = time.monotonic() + timeout
        for name in names:
            while self.kubectl("get", f"crd/{name}", "-o", f"jsonpath={jsonpath}", check=False).stdout != "True":
                if time.monotonic() > deadline:
                    raise TimeoutError(f"CRD {name} not Established after {timeout:.0f} s")
                time.sleep(0.2)
        return names

    def helm(self, *args: str, check: bool = True, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        """Run the pinned helm against the control plane, with its config and cache kept in the temp dir."""
        home = self.dir / "helm"
        env = {
            "KUBECONFIG": str(self.kubeconfig),
            "KUBECACHEDIR": str(self.dir / "kubectl-cache"),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }
        return self._run([str(self._bin["helm"]), *args], check=check, timeout=timeout, env=env)

    def _run(
        self,
        argv: list[str],
        *,
        check: bool,
        timeout: float,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            argv,
            check=False,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )
        if check and result.returncode != 0:
            raise CommandError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def serviceaccount_kubeconfig(self, namespace: str, name: str) -> Path:
        """A kubeconfig authenticating as ServiceAccount ``namespace/name`` (created if absent) with a real
        token from the TokenRequest API -- the same kind of credential a pod gets, so RBAC applies in full."""
        with self.api_client() as api:
            core = client.CoreV1Api(api)
            try:
                core.create_namespaced_service_account(
                    namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
                )
            except client.ApiException as exc:
                if exc.status != 409:
                    raise
            request = client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[SERVICE_ACCOUNT_ISSUER], expiration_seconds=24 * 3600)
            )
            status = core.create_namespaced_service_account_token(name, namespace, request).status
        if status is None or not status.token:
            raise ControlPlaneError(f"TokenRequest for {namespace}/{name} returned no token")
        path = self.dir / "kubeconfigs" / f"sa-{namespace}-{name}.kubeconfig"
        return self._write_kubeconfig(path, f"system:serviceaccount:{namespace}:{name}", status.token, namespace)
