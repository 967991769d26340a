"""A stand-in for one runner manager pod: polls `POST /jobs/request` the way gitlab-runner does (reference
§2.13: token, system_id, info with version), reading config.toml and its replica's system id from the config
Secret on every poll, as gitlab-runner re-reads config.toml when the kubelet updates the mounted Secret.

It exists because the real gitlab-runner cannot be built on this machine (its module's dependencies are not on
the Go module proxy; see scripts/versions.env). It proves what the operator hands a pod, not how gitlab-runner
behaves."""

from __future__ import annotations

import base64
import threading
import time
import tomllib
from dataclasses import dataclass, field

import httpx
from kubernetes import client

VERSION = "19.4.0"


@dataclass
class Poll:
    at: float
    status: int


@dataclass
class EmulatedRunnerPod:
    api: client.ApiClient
    namespace: str
    config_secret: str
    ordinal: int
    interval: float = 0.3
    polls: list[Poll] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def files(self) -> tuple[dict[str, object], str]:
        """config.toml (parsed) and the system id, exactly as the pod would mount them."""
        secret = client.CoreV1Api(self.api).read_namespaced_secret(self.config_secret, self.namespace)
        data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        return tomllib.loads(data["config.toml"]), data[f"system-id-{self.ordinal}"].strip()

    def poll_once(self, http: httpx.Client) -> int:
        config, system_id = self.files()
        runner = config["runners"][0]  # type: ignore[index]
        body = {
            "token": runner["token"],
            "system_id": system_id,
            "info": {"name": "gitlab-runner", "version": VERSION, "revision": "emulated", "platform": "linux",
                     "architecture": "amd64", "executor": runner["executor"], "features": {}},
        }  # fmt: skip
        response = http.post(f"{str(runner['url']).rstrip('/')}/api/v4/jobs/request", json=body)
        self.polls.append(Poll(time.monotonic(), response.status_code))
        return response.status_code

    def start(self) -> EmulatedRunnerPod:
        def loop() -> None:
            with httpx.Client(timeout=5) as http:
                while not self._stop.is_set():
                    try:
                        self.poll_once(http)
                    except (httpx.HTTPError, client.ApiException, KeyError):
                        self.polls.append(Poll(time.monotonic(), 0))
                    self._stop.wait(self.interval)

        self._stop.clear()
        self._thread = threading.Thread(target=loop, name=f"runner-pod-{self.ordinal}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def longest_refusal(self) -> float:
        """The longest stretch of seconds during which GitLab refused this pod's token (403)."""
        longest, since = 0.0, None
        for poll in self.polls:
            if poll.status == 403:
                since = poll.at if since is None else since
            elif since is not None:
                longest, since = max(longest, poll.at - since), None
        return longest
