"""A real node for the local control plane: containerd + runc + CNI bridge, kubelet, kube-proxy and kube-scheduler.

Pods scheduled on it really run, from images built locally (scripts/build-images.sh) and imported into
containerd's ``k8s.io`` namespace: no registry is involved, so pods use ``imagePullPolicy: Never`` or
``IfNotPresent``; a node started with ``NodeOptions(registry_hosts=True)`` can also be told about a local
registry (:meth:`Node.trust_registry`, tests/harness/registry.py). The pod network is a CNI bridge with a private
/24; the host holds the gateway address, which is the only host address pods reach (no masquerading to the outside,
no route beyond the bridge). A fake GitLab for pods listens on :attr:`Node.gateway`.

Services: kube-proxy (built from the pinned kubernetes module) runs in nftables mode, so a pod reaches a ClusterIP
the way it does in a real cluster; in particular in-cluster configuration works unchanged (the kubelet sets
``KUBERNETES_SERVICE_HOST`` to the ``kubernetes`` Service's ClusterIP). That needs a control plane that advertises
the gateway (``ControlPlane(advertise_address=node_gateway(...))``): its ``kubernetes`` Service's endpoints then
point at the gateway, where the apiserver listens. With a loopback-only control plane, pods reach the apiserver
only through :attr:`Node.apiserver_port` on the gateway (a forwarder to the apiserver's loopback port).

What it changes on the machine, and restores in :meth:`Node.stop`: a bridge interface, ``kubepods`` cgroups,
network namespaces and mounts of the pods, kube-proxy's nftables tables, and the sysctls the kubelet rewrites. It
needs root and the packages scripts/setup-node.sh installs; :func:`unavailable_reason` says why a machine cannot
run it. Only one node runs per machine at a time (a lock file); ports, paths, bridge name and subnet are
configurable.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import yaml
from kubernetes import client

from tests.harness import binaries
from tests.harness.controlplane import SERVICE_CLUSTER_IP_RANGE, ControlPlane

REPO_ROOT = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = REPO_ROOT / "scripts" / "setup-node.sh"
IMAGES_SCRIPT = REPO_ROOT / "scripts" / "build-images.sh"
CNI_BIN_DIR = Path("/usr/lib/cni")
CGROUP_ROOT = Path("/sys/fs/cgroup")

# Machine-wide sysctls the node rewrites, saved and restored in this order: the kubelet's (it wants overcommit and
# panics on oops), and the CNI bridge plugin's (a gateway bridge turns on forwarding, which also turns off
# accept_redirects: those are restored after ip_forward, whose write resets them).
NODE_SYSCTLS = (
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/forwarding",
    "net/ipv4/conf/default/forwarding",
    "net/ipv4/conf/all/accept_redirects",
    "net/ipv4/conf/default/accept_redirects",
)


NOT_READY_TAINT = "node.kubernetes.io/not-ready"
START_DEADLINE = 90.0
STOP_DEADLINE = 10.0


class NodeError(RuntimeError):
    """The node could not start, or a step of its teardown failed."""


@dataclass(frozen=True)
class NodeOptions:
    """Everything that must differ between two nodes; only one node per machine runs at a time anyway."""

    subnet: str = "10.88.77.0/24"
    bridge: str = "glrt0"
    lock_file: Path = Path("/run/glrt-node.lock")
    workdir: Path | None = None
    kubelet_port: int = 0  # 0: a free port
    # The kubelet's default; a Secret update reaches a pod's files within about this long.
    sync_frequency: str = "1m"
    # Point containerd's CRI registry config at a hosts directory (``config_path``), so that
    # :meth:`Node.trust_registry` can add a registry while the node runs. Off: containerd's config as before.
    registry_hosts: bool = False


def node_gateway(options: NodeOptions) -> str:
    """The host's address on the pod network (the first address of the subnet)."""
    return str(next(ipaddress.ip_network(options.subnet).hosts()))


def unavailable_reason() -> str | None:
    """One line saying why this machine cannot run a node, or None if it can (installing what is missing)."""
    if os.geteuid() != 0:
        return "not root: a kubelet and containerd need root"
    if not CGROUP_ROOT.is_dir():
        return "no /sys/fs/cgroup"
    result = subprocess.run([str(SETUP_SCRIPT)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["setup-node.sh failed"])[-1]
        return f"cannot install containerd: {last}"
    return None


def build_images() -> dict[str, Path]:
    """Image name -> OCI archive, built (or found cached) by scripts/build-images.sh."""
    result = subprocess.run([str(IMAGES_SCRIPT)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NodeError(f"build-images.sh failed:\n{result.stderr[-4000:]}")
    images: dict[str, Path] = {}
    for line in result.stdout.splitlines():
        name, _, archive = line.partition(" ")
        images[name] = Path(archive)
    return images


def image_names() -> dict[str, str]:
    """The fixed names build-images.sh gives its images, by role."""
    return {
        "pause": "registry.k8s.io/pause:3.10",
        "operator": "localhost/glrt-operator:test",
        "runner": "localhost/glrt-runner-standin:test",
        # The kubernetes executor's job pods: the build container's image and the helper image.
        "job": "localhost/glrt-job:test",
        "helper": "localhost/glrt-runner-helper:test",
    }


def _nft_objects() -> set[tuple[str, ...]]:
    """Every nftables table ``("table", family, name)`` and chain ``("chain", family, table, name)`` of the host."""
    result = subprocess.run(["nft", "-j", "list", "ruleset"], capture_output=True, text=True, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        return set()
    objects: set[tuple[str, ...]] = set()
    for item in json.loads(result.stdout).get("nftables", []):
        if "table" in item:
            objects.add(("table", item["table"]["family"], item["table"]["name"]))
        elif "chain" in item:
            chain = item["chain"]
            objects.add(("chain", chain["family"], chain["table"], chain["name"]))
    return objects


def _nft(problems: list[str], *args: str) -> None:
    result = subprocess.run(["nft", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        problems.append(f"nft {' '.join(args)}: {result.stderr.strip()}")


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class _Forwarder:
    """TCP forwarding from the bridge gateway to a loopback port: pods reach the apiserver, which stays on
    loopback (its certificate also names the gateway, see ControlPlane(extra_ips=...))."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self._target = target
        self._server = socket.create_server(listen)
        self.port: int = self._server.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="node-forwarder").start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                conn.close()
                continue
            upstream.settimeout(None)
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed = True
        self._server.close()


class Node:
    """containerd, kubelet and kube-scheduler for a running :class:`ControlPlane`; see the module docstring."""

    def __init__(self, controlplane: ControlPlane, options: NodeOptions | None = None) -> None:
        self.cp = controlplane
        self.options = options or NodeOptions()
        self.gateway = node_gateway(self.options)
        self.name = "127.0.0.1"  # --hostname-override: the kubelet refuses a loopback --node-ip, not this
        self._lock: IO[str] | None = None
        self._base: Path | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._sysctls: dict[str, str] = {}
        self._netns_before: set[str] = set()
        self._nft_before: set[tuple[str, ...]] | None = None
        self._forwarder: _Forwarder | None = None
        self.apiserver_port = 0
        self.startup_seconds: float | None = None
        self.teardown_seconds: float | None = None
        self.teardown_phases: dict[str, float] = {}  # seconds per step of the last stop()

    # ----------------------------------------------------------------------------------------------- paths

    @property
    def dir(self) -> Path:
        if self._base is None:
            raise NodeError("the node is not started")
        return self._base

    @property
    def socket(self) -> Path:
        return self.dir / "containerd" / "containerd.sock"

    @property
    def registry_hosts_dir(self) -> Path:
        """containerd's ``config_path``: one ``<host:port>/hosts.toml`` per registry it is told about."""
        return self.dir / "containerd" / "certs.d"

    def log_path(self, component: str) -> Path:
        return self.dir / "logs" / f"{component}.log"

    # ------------------------------------------------------------------------------------------- lifecycle

    def start(self, images: dict[str, Path] | None = None) -> None:
        """Start everything, import ``images`` (default: build-images.sh's), wait for Ready, lift the taint."""
        started = time.monotonic()
        reason = unavailable_reason()
        if reason is not None:
            raise NodeError(reason)
        version = self.cp.kubernetes_version  # the kubelet may not be newer than the apiserver: the same version
        bins = {
            name: binaries.binary(name, kubernetes_version=version)
            for name in ("kubelet", "kube-scheduler", "kube-proxy")
        }
        images = build_images() if images is None else images
        self._acquire_lock()
        atexit.register(self.stop)
        try:
            self._base = Path(tempfile.mkdtemp(prefix="glrt-node-", dir=self.options.workdir))
            for sub in ("logs", "containerd", "kubelet", "cni/net.d", "cni/ipam"):
                (self.dir / sub).mkdir(parents=True, mode=0o700)
            self._sysctls = {key: (Path("/proc/sys") / key).read_text().strip() for key in NODE_SYSCTLS}
            self._netns_before = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
            self._nft_before = _nft_objects()
            self._create_bridge()
            self._start_containerd()
            wanted = set(image_names().values())  # the Debian base is only for building
            for name, archive in images.items():
                if name not in wanted:
                    continue
                self.ctr("images", "import", str(archive))
                if name not in self.ctr("images", "ls", "-q"):
                    raise NodeError(f"image {name} not found in containerd after importing {archive}")
            self._start_kubelet(bins["kubelet"])
            self._start_scheduler(bins["kube-scheduler"])
            self._start_kube_proxy(bins["kube-proxy"])
            api_port = int(self.cp.server.rsplit(":", 1)[1])
            if self.cp.advertise_address == self.gateway:
                self.apiserver_port = api_port  # the apiserver listens on the gateway itself
            else:
                self._forwarder = _Forwarder((self.gateway, 0), ("127.0.0.1", api_port))
                self.apiserver_port = self._forwarder.port
            self._wait_ready()
            self._wait("kube-proxy to route the kubernetes Service", self._kubernetes_service_routed)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        """Tear everything down and restore the machine: pods, processes, mounts, bridge, cgroups, sysctls."""
        if self._lock is None:
            return
        started = time.monotonic()
        problems: list[str] = []
        phases: dict[str, float] = {}
        mark = started

        def lap(phase: str) -> None:
            nonlocal mark
            now = time.monotonic()
            phases[phase] = now - mark
            mark = now

        if self._base is not None:
            self._delete_pods()
            self._stop_sandboxes(problems)
        lap("pods")
        for name in ("kube-proxy", "kube-scheduler", "kubelet", "containerd"):
            self._terminate(name)
            lap(name)
        self._restore_nftables(problems)
        lap("nftables")
        if self._forwarder is not None:
            self._forwarder.close()
            self._forwarder = None
        if self._base is not None:
            self._kill_shims()
            self._unmount_under(self.dir)
        lap("shims and mounts")
        self._remove_netns()
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run(["ip", "link", "del", self.options.bridge], check=True, capture_output=True)
        lap("netns and bridge")
        self._remove_kubepods_cgroups(problems)
        for key, value in self._sysctls.items():
            try:
                (Path("/proc/sys") / key).write_text(value)
            except OSError as exc:
                problems.append(f"restore {key}: {exc}")
        if self._base is not None:
            if os.environ.get("GLRT_KEEP_CONTROLPLANE"):
                print(f"node: keeping {self._base}")
            else:
                lap("cgroups and sysctls")
                shutil.rmtree(self._base, ignore_errors=True)
            self._base = None
        self._lock.close()
        self._lock = None
        atexit.unregister(self.stop)
        lap("files")
        self.teardown_phases = phases
        self.teardown_seconds = time.monotonic() - started
        if problems:
            raise NodeError("node teardown left: " + "; ".join(problems))

    def __enter__(self) -> Node:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------------------------------------- helpers

    def ctr(self, *args: str) -> str:
        """Runs ``ctr -n k8s.io`` against this node's containerd; returns stdout."""
        result = subprocess.run(
            ["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        if result.returncode != 0:
            raise NodeError(f"ctr {' '.join(args[:2])} failed: {result.stderr.strip()[-2000:]}")
        return result.stdout

    def trust_registry(self, address: str, ca_file: Path) -> None:
        """Let containerd pull from the HTTPS registry at ``address`` (``host:port``), trusting ``ca_file``."""
        if not self.options.registry_hosts:
            raise NodeError("this node was started without NodeOptions(registry_hosts=True)")
        host_dir = self.registry_hosts_dir / address
        host_dir.mkdir(parents=True, exist_ok=True)
        (host_dir / "hosts.toml").write_text(
            f'server = "https://{address}"\n\n'
            f'[host."https://{address}"]\n'
            '  capabilities = ["pull", "resolve"]\n'
            f'  ca = "{ca_file}"\n'
        )

    def forget_registry(self, address: str) -> None:
        shutil.rmtree(self.registry_hosts_dir / address, ignore_errors=True)

    def describe(self, namespace: str) -> str:
        """The pods of ``namespace``, their Events and the last log lines of each: for a failing test's message."""
        kubectl = self.cp.kubectl
        parts = [kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout]
        parts.append(kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout[-3000:])
        for name in kubectl("get", "pods", "-n", namespace, "-o", "name", check=False).stdout.split():
            logs = kubectl("logs", "-n", namespace, name, "--all-containers", "--tail=30", check=False)
            parts.append(f"--- {name}\n{logs.stdout}{logs.stderr}")
        return "\n".join(parts)

    def logs(self, component: str) -> str:
        path = self.log_path(component)
        return path.read_text(errors="replace") if path.exists() else ""

    def _acquire_lock(self) -> None:
        self.options.lock_file.parent.mkdir(parents=True, exist_ok=True)
        lock = self.options.lock_file.open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise NodeError(f"another node runs on this machine (lock {self.options.lock_file} is held)") from None
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock = lock

    def _spawn(self, component: str, argv: list[str]) -> None:
        with self.log_path(component).open("ab") as log:
            self._procs[component] = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def _terminate(self, component: str) -> None:
        proc = self._procs.pop(component, None)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _wait(self, what: str, predicate: Callable[[], bool], deadline: float = START_DEADLINE) -> None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    tail = "\n".join(self.logs(name).splitlines()[-30:])
                    raise NodeError(f"{name} exited ({proc.returncode}) waiting for {what}:\n{tail}")
            if predicate():
                return
            time.sleep(0.5)
        raise NodeError(f"timed out after {deadline:.0f}s waiting for {what}")

    # ------------------------------------------------------------------------------------------ components

    def _create_bridge(self) -> None:
        # Created before the CNI plugin would, so the forwarder can bind the gateway before any pod exists.
        bridge = self.options.bridge
        prefix = ipaddress.ip_network(self.options.subnet).prefixlen
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)  # a crashed run's
        for cmd in (
            ["ip", "link", "add", bridge, "type", "bridge"],
            ["ip", "addr", "add", f"{self.gateway}/{prefix}", "dev", bridge],
            ["ip", "link", "set", bridge, "up"],
        ):
            result = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise NodeError(f"{' '.join(cmd)}: {result.stderr.strip()}")
        conflist = {
            "cniVersion": "0.4.0",
            "name": "glrt",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": self.options.subnet, "gateway": self.gateway}]],
                        # Service ClusterIPs go through the host, where kube-proxy's rules translate them; no
                        # default route: pods still reach nothing beyond the bridge and the Services.
                        "routes": [{"dst": SERVICE_CLUSTER_IP_RANGE, "gw": self.gateway}],
                        "dataDir": str(self.dir / "cni" / "ipam"),
                    },
                }
            ],
        }
        (self.dir / "cni" / "net.d" / "10-glrt.conflist").write_text(json.dumps(conflist, indent=2))

    def _start_containerd(self) -> None:
        d = self.dir / "containerd"
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = f"""version = 2
root = "{d / "root"}"
state = "{d / "state"}"
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{d / "containerd.sock.ttrpc"}"
[{cri}]
  sandbox_image = "{image_names()["pause"]}"
  # These machines lack CAP_SYS_RESOURCE: sandboxes may not lower their oom_score_adj.
  restrict_oom_score_adj = true
  [{cri}.cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{self.dir / "cni" / "net.d"}"
  [{cri}.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
"""
        if self.options.registry_hosts:
            # Read at every pull (containerd 1.6 docs/hosts.md), so registries can be added while it runs.
            self.registry_hosts_dir.mkdir(mode=0o700)
            config += f"""  [{cri}.registry]
    config_path = "{self.registry_hosts_dir}"
"""
        (d / "config.toml").write_text(config)
        self._spawn("containerd", ["containerd", "--config", str(d / "config.toml")])
        self._wait("containerd's socket", self.socket.exists, 30.0)

    def _start_kubelet(self, kubelet: Path) -> None:
        d = self.dir / "kubelet"
        port = self.options.kubelet_port or _free_port()
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": "127.0.0.1",
            "port": port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": _free_port(),
            # Loopback only, on a throwaway node: the apiserver (kubectl logs/exec) connects without a client cert.
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs",
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "syncFrequency": self.options.sync_frequency,
            "serializeImagePulls": False,
            # Imported images cannot be pulled again: never garbage-collect them, never evict for disk.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "0%", "imagefs.available": "0%"},
            "resolvConf": "",
            "staticPodPath": "",
            "rotateCertificates": False,
        }
        if binaries.minor_version(self.cp.kubernetes_version) >= (1, 31):
            # These hosts are cgroup v1, which kubelet 1.35 refuses by default; the field exists from 1.31 on.
            config["failCgroupV1"] = False
        (d / "config.yaml").write_text(yaml.safe_dump(config))
        self._spawn(
            "kubelet",
            [
                str(kubelet),
                f"--config={d / 'config.yaml'}",
                f"--kubeconfig={self.cp.kubeconfig}",
                f"--root-dir={d / 'root'}",
                f"--cert-dir={d / 'pki'}",
                f"--hostname-override={self.name}",
                "--v=1",
            ],
        )

    def _start_scheduler(self, scheduler: Path) -> None:
        self._spawn(
            "kube-scheduler",
            [
                str(scheduler),
                f"--kubeconfig={self.cp.kubeconfig}",
                f"--authentication-kubeconfig={self.cp.kubeconfig}",
                f"--authorization-kubeconfig={self.cp.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={_free_port()}",
                f"--cert-dir={self.dir / 'scheduler'}",
            ],
        )

    def _start_kube_proxy(self, kube_proxy: Path) -> None:
        # nftables mode: the kernel here has nf_tables but no IPVS, and no /lib/modules to load anything; all rules
        # live in kube-proxy's own tables, which stop() deletes. masqueradeAll: replies from a Service's endpoint
        # must come back through the host's conntrack even when client and endpoint share the bridge.
        d = self.dir / "kube-proxy"
        d.mkdir(mode=0o700)
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "nftables",
            "clientConnection": {"kubeconfig": str(self.cp.kubeconfig)},
            "hostnameOverride": self.name,
            "clusterCIDR": self.options.subnet,
            "detectLocalMode": "ClusterCIDR",
            "nftables": {"masqueradeAll": True, "syncPeriod": "30s", "minSyncPeriod": "0s"},
            # Zeros leave the machine-wide conntrack sysctls as they are (kube-proxy would raise nf_conntrack_max).
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "healthzBindAddress": f"127.0.0.1:{_free_port()}",
            "metricsBindAddress": f"127.0.0.1:{_free_port()}",
            "nodePortAddresses": [f"{self.gateway}/32"],
        }
        (d / "config.yaml").write_text(yaml.safe_dump(config))
        self._spawn("kube-proxy", [str(kube_proxy), f"--config={d / 'config.yaml'}", "--v=1"])

    def _kubernetes_service_routed(self) -> bool:
        """kube-proxy has written its rules for the kubernetes Service's ClusterIP."""
        result = subprocess.run(
            ["nft", "list", "map", "ip", "kube-proxy", "service-ips"], capture_output=True, text=True, check=False
        )
        with self.cp.api_client() as api:
            cluster_ip = client.CoreV1Api(api).read_namespaced_service("kubernetes", "default").spec.cluster_ip
        return result.returncode == 0 and f"{cluster_ip} . tcp . 443" in result.stdout

    def _wait_ready(self) -> None:
        core = client.CoreV1Api(self.cp.api_client())

        def ready() -> bool:
            try:
                node = core.read_node(self.name)
            except client.ApiException:
                return False
            conditions = {c.type: c.status for c in (node.status.conditions or [])}
            if conditions.get("Ready") != "True":
                return False
            kubelet = node.status.node_info.kubelet_version
            if kubelet != self.cp.kubernetes_version:
                raise NodeError(f"the node runs kubelet {kubelet}, not {self.cp.kubernetes_version}")
            # No node-lifecycle controller runs: lift NodeTaint admission's not-ready taint ourselves.
            taints = [t for t in (node.spec.taints or []) if t.key != NOT_READY_TAINT]
            if len(taints) != len(node.spec.taints or []):
                core.patch_node(self.name, {"spec": {"taints": [t.to_dict() for t in taints] or None}})
                return False
            return True

        self._wait("the node to be Ready without the not-ready taint", ready)

    # -------------------------------------------------------------------------------------------- teardown

    def _delete_pods(self) -> None:
        # While the kubelet runs, deleting the pods lets it stop sandboxes through CRI (CNI teardown included).
        try:
            core = client.CoreV1Api(self.cp.api_client())
            pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={self.name}").items
            for pod in pods:
                with contextlib.suppress(client.ApiException):
                    core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0)
        except Exception:
            return

    def _stop_sandboxes(self, problems: list[str]) -> None:
        if "containerd" not in self._procs:
            return
        end = time.monotonic() + STOP_DEADLINE
        while time.monotonic() < end:
            try:
                if not self.ctr("tasks", "ls", "-q").split():
                    return
            except NodeError:
                return
            time.sleep(0.5)
        # Whatever the kubelet did not stop in time: kill through containerd.
        for task in self.ctr("tasks", "ls", "-q").split():
            with contextlib.suppress(NodeError):
                self.ctr("tasks", "kill", "--signal", "SIGKILL", task)
        time.sleep(1)

    def _kill_shims(self) -> None:
        # Shims outlive containerd by design; ours name our socket on their command line.
        marker = str(self.socket).encode()
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"containerd-shim" in cmdline and marker in cmdline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)

    @staticmethod
    def _unmount_under(path: Path) -> None:
        prefix = str(path)
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        for target in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True, check=False)

    def _restore_nftables(self, problems: list[str]) -> None:
        # kube-proxy's own tables (ip/ip6 kube-proxy) and the kubelet's iptables-nft canary chains and tables
        # (KUBE-KUBELET-CANARY in mangle, nat and filter): whatever was not there before start() goes.
        if self._nft_before is None:
            return
        before, self._nft_before = self._nft_before, None
        now = _nft_objects()
        new_tables = {o for o in now - before if o[0] == "table"}
        for _, family, table in sorted(new_tables):
            _nft(problems, "delete", "table", family, table)
        for _, family, table, chain in sorted(
            o for o in now - before if o[0] == "chain" and ("table", *o[1:3]) not in new_tables
        ):
            _nft(problems, "flush", "chain", family, table, chain)
            _nft(problems, "delete", "chain", family, table, chain)
        left = _nft_objects() - before
        if left:
            problems.append(f"nftables objects left: {sorted(left)}")

    def _remove_netns(self) -> None:
        if not os.path.isdir("/run/netns"):
            return
        for name in set(os.listdir("/run/netns")) - self._netns_before:
            if name.startswith("cni-"):
                subprocess.run(["umount", "-l", f"/run/netns/{name}"], capture_output=True, check=False)
                with contextlib.suppress(OSError):
                    os.unlink(f"/run/netns/{name}")

    @staticmethod
    def _remove_kubepods_cgroups(problems: list[str]) -> None:
        _kill_kubepods_tasks()
        for controller in CGROUP_ROOT.iterdir():
            top = controller / "kubepods"
            if not top.is_dir() or top.is_symlink():
                continue
            # Children first: a cgroup directory is removed with rmdir once it has no children and no tasks.
            dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
            for d in [*dirs, top]:
                try:
                    d.rmdir()
                except OSError as exc:
                    problems.append(f"cgroup {d}: {exc.strerror}")
                    break


def _kill_kubepods_tasks() -> None:
    """Processes still in the kubepods cgroups (a pause or container process whose shim was killed mid-stop, reparented
    to init) are this node's: the node lock makes it the only one. SIGKILL them so their cgroups can go."""
    pids = {
        pid
        for procs in CGROUP_ROOT.glob("*/kubepods/**/cgroup.procs")
        for pid in procs.read_text().split()
        if pid.isdigit()
    }
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(int(pid), signal.SIGKILL)
    end = time.monotonic() + 5
    while pids and time.monotonic() < end:
        pids = {pid for pid in pids if Path(f"/proc/{pid}").exists()}
        time.sleep(0.1)


@contextlib.contextmanager
def running(controlplane: ControlPlane, options: NodeOptions | None = None) -> Iterator[Node]:
    node = Node(controlplane, options)
    node.start()
    try:
        yield node
    finally:
        node.stop()
