"""A real container registry (CNCF Distribution's ``registry``) authenticated by the fake GitLab, as GitLab's is.

The registry's config follows GitLab's (https://docs.gitlab.com/administration/packages/container_registry/):
``auth.token`` with ``realm`` = the fake's ``/jwt/auth``, ``service`` = ``container_registry``, ``issuer`` =
``gitlab-issuer`` and ``rootcertbundle`` = the certificate of the key the fake signs with; storage is the filesystem
in a temporary directory. It serves HTTPS with a certificate from a throwaway CA made here, on an address both the
node's containerd (a host process) and pods reach: the node's bridge gateway. containerd is told to trust the CA
through its hosts directory (:meth:`tests.harness.node.Node.trust_registry`).

The realm is HTTPS and named by a host name, as GitLab's is: crane refuses a plain-HTTP realm for an HTTPS registry
and a realm that is a private IP literal other than the registry's own host:port ("realm host ... is a private or
link-local address"). So the harness puts a TLS front (same CA) on loopback before the fake GitLab's HTTP port and
names it ``https://localhost:<port>/jwt/auth``; containerd and crane run on the host, where that resolves.

:meth:`Registry.crane` runs go-containerregistry's ``crane`` against it with given credentials (in a throwaway
``DOCKER_CONFIG``, never on the command line). Binaries: scripts/fetch-binaries.sh ``registry`` and ``crane``.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import yaml

from tests.harness import binaries

REALM_HOST = "localhost"  # a name, not an IP literal: see the module docstring
START_DEADLINE = 30.0
STOP_DEADLINE = 10.0


class RegistryError(RuntimeError):
    """The registry could not start, or a crane command failed."""


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def write_tls(directory: Path, hosts: list[str]) -> tuple[Path, Path, Path]:
    """A throwaway CA and a serving certificate for ``hosts`` (IP addresses or DNS names) signed by it:
    (ca.pem, server.pem, server-key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "glrt test registry CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server-key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_file.chmod(0o600)
    return ca_file, cert_file, key_file


class _TlsFront:
    """TLS termination on ``listen`` for a plain-HTTP server at ``target`` (bytes piped both ways)."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int], cert_file: Path, key_file: Path) -> None:
        self._target = target
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(str(cert_file), str(key_file))
        self._server = socket.create_server(listen)
        self.port: int = self._server.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="registry-realm-tls").start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10)
            tls = self._context.wrap_socket(conn, server_side=True)
            tls.settimeout(None)
            upstream = socket.create_connection(self._target, timeout=5)
            upstream.settimeout(None)
        except OSError:
            conn.close()
            return
        threading.Thread(target=self._pipe, args=(upstream, tls), daemon=True).start()
        self._pipe(tls, upstream)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError, ValueError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed = True
        self._server.close()


class Registry:
    """One registry process; see the module docstring. ``gitlab_url`` is the fake GitLab (``http://host:port``)
    and ``token_certificate`` the PEM certificate of the key its ``/jwt/auth`` signs with."""

    def __init__(
        self,
        *,
        host: str,
        gitlab_url: str,
        token_certificate: bytes,
        port: int = 0,
        workdir: Path | None = None,
    ) -> None:
        self.host = host
        split = urlsplit(gitlab_url)
        if split.scheme != "http" or split.hostname is None or split.port is None:
            raise RegistryError(f"gitlab_url must be http://host:port, not {gitlab_url!r}")
        self._gitlab = (split.hostname, split.port)
        self._front: _TlsFront | None = None
        self.realm = ""
        self._token_certificate = token_certificate
        self._port = port
        self._workdir = workdir
        self._base: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.startup_seconds: float | None = None

    # ----------------------------------------------------------------------------------------------- paths
    @property
    def dir(self) -> Path:
        if self._base is None:
            raise RegistryError("the registry is not started")
        return self._base

    @property
    def address(self) -> str:
        """``host:port``: how image references and .dockerconfigjson name the registry."""
        return f"{self.host}:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.dir / "tls" / "ca.pem"

    @property
    def log_path(self) -> Path:
        return self.dir / "registry.log"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self._base and self.log_path.exists() else ""

    # ------------------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        started = time.monotonic()
        registry = binaries.binary("registry")
        self._base = Path(tempfile.mkdtemp(prefix="glrt-registry-", dir=self._workdir))
        try:
            for sub in ("tls", "data"):
                (self.dir / sub).mkdir(mode=0o700)
            _, cert_file, key_file = write_tls(self.dir / "tls", [self.host, REALM_HOST])
            bundle = self.dir / "tls" / "token-signer.pem"
            bundle.write_bytes(self._token_certificate)
            self.port = self._port or _free_port(self.host)
            self._front = _TlsFront(("127.0.0.1", 0), self._gitlab, cert_file, key_file)
            self.realm = f"https://{REALM_HOST}:{self._front.port}/jwt/auth"
            config = {
                "version": 0.1,
                "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
                "storage": {
                    "filesystem": {"rootdirectory": str(self.dir / "data")},
                    "delete": {"enabled": True},
                },
                "http": {
                    "addr": self.address,
                    "secret": secrets.token_hex(16),
                    "tls": {"certificate": str(cert_file), "key": str(key_file)},
                },
                "auth": {
                    "token": {
                        "realm": self.realm,
                        "service": "container_registry",
                        "issuer": "gitlab-issuer",
                        "rootcertbundle": str(bundle),
                        "autoredirect": False,
                    }
                },
            }
            (self.dir / "config.yml").write_text(yaml.safe_dump(config))
            with self.log_path.open("ab") as log:
                self._proc = subprocess.Popen(
                    [str(registry), "serve", str(self.dir / "config.yml")],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    # No OpenTelemetry exporter: it would try to reach a collector (registry v3 traces by default).
                    env={**os.environ, "OTEL_TRACES_EXPORTER": "none"},
                )
            self._wait_serving()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def _wait_serving(self) -> None:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        end = time.monotonic() + START_DEADLINE
        while time.monotonic() < end:
            assert self._proc is not None
            if self._proc.poll() is not None:
                tail = "\n".join(self.logs().splitlines()[-30:])
                raise RegistryError(f"registry exited ({self._proc.returncode}):\n{tail}")
            with contextlib.suppress(httpx.TransportError):
                # The API base answers 401 with the Bearer challenge once it serves (token auth is on).
                if httpx.get(f"https://{self.address}/v2/", verify=context, timeout=2).status_code == 401:
                    return
            time.sleep(0.2)
        raise RegistryError(f"the registry did not serve https://{self.address}/v2/ in {START_DEADLINE:.0f}s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._front is not None:
            self._front.close()
            self._front = None
        if self._base is not None:
            if os.environ.get("GLRT_KEEP_CONTROLPLANE"):
                print(f"registry: keeping {self._base}")
            else:
                shutil.rmtree(self._base, ignore_errors=True)
            self._base = None

    def __enter__(self) -> Registry:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --------------------------------------------------------------------------------------------- clients
    def crane(
        self, *args: str, credentials: tuple[str, str] | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run ``crane`` trusting the registry's CA, logged in with ``credentials`` (anonymous without). A failure
        with ``check`` raises :class:`RegistryError` with crane's stderr (which never quotes credentials)."""
        with tempfile.TemporaryDirectory(prefix="glrt-crane-") as config_dir:
            auths = {}
            if credentials is not None:
                pair = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
                auths[self.address] = {"auth": pair}
            config = Path(config_dir) / "config.json"
            config.write_text(json.dumps({"auths": auths}))
            config.chmod(0o600)
            env = {**os.environ, "DOCKER_CONFIG": config_dir, "SSL_CERT_FILE": str(self.ca_file)}
            result = subprocess.run(
                [str(binaries.binary("crane")), *args],
                capture_output=True,
                text=True,
                check=False,
                env=env,
                timeout=timeout,
            )
        if check and result.returncode != 0:
            raise RegistryError(f"crane {args[0]} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
        return result

    def ref(self, repository: str, tag: str) -> str:
        return f"{self.address}/{repository}:{tag}"


@contextlib.contextmanager
def running(*, host: str, gitlab_url: str, token_certificate: bytes, workdir: Path | None = None) -> Iterator[Registry]:
    registry = Registry(host=host, gitlab_url=gitlab_url, token_certificate=token_certificate, workdir=workdir)
    registry.start()
    try:
        yield registry
    finally:
        registry.stop()
