"""The runner stand-in against the fake GitLab, as a process: each behaviour the operator relies on.

The manager pods run this stand-in (the real gitlab-runner cannot be built here); these tests keep it faithful to
gitlab-runner's documented `run` behaviour: config reload by mtime, `.runner_system_id` beside `--config`,
health after 403s, signals, jobs, and `/metrics`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_gitlab import FakeGitLab, jobs
from tests.harness import standin
from tests.harness.waiting import wait_for

SYSTEM_ID = "s_abcdef123456"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write_config(path: Path, url: str, token: str, *, metrics_port: int = 0) -> None:
    listen = f'listen_address = "127.0.0.1:{metrics_port}"\n' if metrics_port else ""
    path.write_text(
        f'concurrent = 1\ncheck_interval = 1\n{listen}\n[[runners]]\n  name = "t"\n  url = "{url}"\n'
        f'  token = "{token}"\n  executor = "shell"\n'
    )


class Standin:
    def __init__(self, tmp: Path, config: Path) -> None:
        self.log = tmp / "standin.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(standin.binary()), "run", "--config", str(config), "--working-directory", str(tmp)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    with FakeGitLab().running() as gl:
        yield gl


@pytest.fixture
def setup(tmp_path: Path, gitlab: FakeGitLab) -> Iterator[tuple[Path, int, str, list[Standin]]]:
    """A config.toml reached through a symlink (as in the pod), with `.runner_system_id` beside the link."""
    runner = gitlab.create_runner()
    secrets_dir, etc = tmp_path / "secrets", tmp_path / "etc"
    secrets_dir.mkdir()
    etc.mkdir()
    write_config(secrets_dir / "config.toml", gitlab.url, runner.token or "")
    (etc / "config.toml").symlink_to(secrets_dir / "config.toml")
    (etc / ".runner_system_id").write_text(SYSTEM_ID + "\n")
    started: list[Standin] = []
    yield etc / "config.toml", runner.id, runner.token or "", started
    for s in started:
        s.stop()


def polls(gitlab: FakeGitLab) -> int:
    return sum(1 for c in gitlab.calls if c.path.endswith("/jobs/request"))


def test_bad_toml_is_fatal_at_start(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("concurrent = = 1\n")
    result = subprocess.run(
        [str(standin.binary()), "run", "--config", str(config), "--working-directory", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0 and "failed to load config" in result.stdout + result.stderr


def test_polls_with_the_system_id_beside_the_config_path_as_given(
    tmp_path: Path, gitlab: FakeGitLab, setup: tuple[Path, int, str, list[Standin]]
) -> None:
    config, runner_id, _, started = setup
    started.append(Standin(tmp_path, config))
    wait_for(lambda: SYSTEM_ID in gitlab.runners[runner_id].managers, timeout=20, message="a poll with the id")
    manager = gitlab.runners[runner_id].managers[SYSTEM_ID]
    assert manager.version == "19.4.0" and manager.executor == "shell"
    assert set(gitlab.runners[runner_id].managers) == {SYSTEM_ID}


def test_three_forbidden_polls_disable_the_runner_until_the_config_reloads(
    tmp_path: Path, gitlab: FakeGitLab, setup: tuple[Path, int, str, list[Standin]]
) -> None:
    config, runner_id, _, started = setup
    new_token = gitlab.revoke_token(runner_id)  # the file now holds a dead token
    s = Standin(tmp_path, config)
    started.append(s)
    wait_for(lambda: "is unhealthy" in s.output(), timeout=30, message="unhealthy after 3 forbidden polls")
    count = polls(gitlab)
    time.sleep(3)
    assert polls(gitlab) == count, "an unhealthy runner must stop polling"

    # The kubelet's atomic swap: a new file (later mtime) behind the same path.
    target = config.resolve()
    write_config(target.with_suffix(".new"), gitlab.url, new_token)
    os.replace(target.with_suffix(".new"), target)
    wait_for(
        lambda: (
            gitlab.runners[runner_id].managers.get(SYSTEM_ID) is not None
            and gitlab.runners[runner_id].managers[SYSTEM_ID].contacted_at is not None
        ),
        timeout=20,
        message="a successful poll with the new token after the reload",
    )
    assert "Configuration loaded" in s.output()


def test_sigquit_waits_for_the_running_job_and_sigterm_aborts_it(
    tmp_path: Path, gitlab: FakeGitLab, setup: tuple[Path, int, str, list[Standin]]
) -> None:
    config, runner_id, _, started = setup
    graceful = gitlab.enqueue_job(runner_id=runner_id, payload=jobs.sleep_job(2))
    s = Standin(tmp_path, config)
    started.append(s)
    wait_for(lambda: any(j[0] == graceful for j in gitlab.assigned_jobs), timeout=20, message="job picked up")
    s.proc.send_signal(signal.SIGQUIT)
    assert s.proc.wait(timeout=20) == 0
    assert jobs.results(gitlab)[graceful] == {"state": "success", "failure_reason": ""}

    forced = gitlab.enqueue_job(runner_id=runner_id, payload=jobs.sleep_job(60))
    s2 = Standin(tmp_path, config)
    started.append(s2)
    wait_for(lambda: any(j[0] == forced for j in gitlab.assigned_jobs), timeout=20, message="job picked up")
    time.sleep(0.5)
    s2.proc.send_signal(signal.SIGTERM)
    assert s2.proc.wait(timeout=20) != 0
    assert jobs.results(gitlab)[forced]["state"] == "failed"


def test_a_failing_job_is_reported_failed(
    tmp_path: Path, gitlab: FakeGitLab, setup: tuple[Path, int, str, list[Standin]]
) -> None:
    config, runner_id, _, started = setup
    job = gitlab.enqueue_job(runner_id=runner_id, payload=jobs.sleep_job(0, succeed=False))
    started.append(Standin(tmp_path, config))
    wait_for(lambda: job in jobs.results(gitlab), timeout=20, message="job result")
    assert jobs.results(gitlab)[job] == {"state": "failed", "failure_reason": "script_failure"}


def scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            return str(resp.read().decode())
    except OSError:
        return None


def samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value, comments left out."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            found[series] = float(value)
    return found


def test_metrics_show_the_process_state(tmp_path: Path, gitlab: FakeGitLab) -> None:
    runner = gitlab.create_runner()
    port = free_port()
    config = tmp_path / "config.toml"
    write_config(config, gitlab.url, runner.token or "", metrics_port=port)
    s = Standin(tmp_path, config)
    try:
        text = wait_for(lambda: scrape(port), timeout=20, message="/metrics")
        assert 'gitlab_runner_process_state_info{state="running"} 1' in text
    finally:
        s.stop()


def test_metrics_count_running_and_failed_jobs_as_the_dashboard_reads_them(tmp_path: Path, gitlab: FakeGitLab) -> None:
    """gitlab_runner_jobs, gitlab_runner_concurrent and gitlab_runner_failed_jobs_total{failure_reason}: the
    series of the chart's dashboard row for manager pods."""
    runner = gitlab.create_runner()
    port = free_port()
    config = tmp_path / "config.toml"
    write_config(config, gitlab.url, runner.token or "", metrics_port=port)
    s = Standin(tmp_path, config)
    try:
        idle = samples(wait_for(lambda: scrape(port), timeout=20, message="/metrics"))
        assert idle["gitlab_runner_jobs"] == 0 and idle["gitlab_runner_concurrent"] == 1
        assert not any(k.startswith("gitlab_runner_failed_jobs_total") for k in idle)

        running = gitlab.enqueue_job(runner_id=runner.id, payload=jobs.sleep_job(3))
        wait_for(lambda: samples(scrape(port) or "").get("gitlab_runner_jobs") == 1, timeout=20, message="1 job")
        wait_for(lambda: running in jobs.results(gitlab), timeout=30, message="the job's result")
        failing = gitlab.enqueue_job(runner_id=runner.id, payload=jobs.sleep_job(0, succeed=False))
        wait_for(lambda: failing in jobs.results(gitlab), timeout=30, message="the failing job's result")
        after = samples(wait_for(lambda: scrape(port), timeout=20, message="/metrics"))
        assert after["gitlab_runner_jobs"] == 0
        assert after['gitlab_runner_failed_jobs_total{failure_reason="script_failure"}'] == 1
        assert [k for k in after if k.startswith("gitlab_runner_failed_jobs_total")] == [
            'gitlab_runner_failed_jobs_total{failure_reason="script_failure"}'
        ]  # the successful job is not counted
    finally:
        s.stop()
