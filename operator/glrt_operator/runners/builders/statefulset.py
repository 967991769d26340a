"""The StatefulSet of runner manager pods of a `Runner` (pure)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ...runner_config.credentials import credential_plan
from ..model import RunnerSpec
from .common import (
    ANNOTATION_CONFIG_CHECKSUM,
    CA_MOUNT,
    CONFIG_DIR,
    CONTAINER_NAME,
    FS_GROUP,
    HOME_DIR,
    METRICS_PORT,
    METRICS_PORT_NAME,
    RESERVED_ENV,
    RUN_AS_GROUP,
    RUN_AS_USER,
    RUNNER_SCRIPT,
    SECRET_VOLUME_MODE,
    SECRETS_MOUNT,
    _set_if,
    child_metadata,
    drain_script,
    labels,
    selector_labels,
)


def _probe(period: int, failure_threshold: int, initial_delay: int) -> dict[str, Any]:
    # gitlab-runner's own HTTP server: alive as long as the process is, whatever GitLab's state.
    return {
        "httpGet": {"path": "/metrics", "port": METRICS_PORT_NAME, "scheme": "HTTP"},
        "initialDelaySeconds": initial_delay,
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failure_threshold,
        "successThreshold": 1,
    }


def _env(user_env: tuple[Mapping[str, Any], ...]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    # A UID without a passwd entry (OpenShift assigns one) gets HOME=/, the read-only root filesystem.
    if not any(e.get("name") == "HOME" for e in user_env):
        env.append({"name": "HOME", "value": HOME_DIR})
    env.extend(copy.deepcopy(dict(e)) for e in user_env if e.get("name") not in RESERVED_ENV)
    return env


def _volumes(
    spec: RunnerSpec, config_secret: str, ca_secret_key: tuple[str, str] | None
) -> tuple[list[Any], list[Any]]:
    """The pod's volumes and the container's mounts: the config Secret, the writable emptyDirs, the CA, and the
    credential files of spec.config."""
    volumes: list[dict[str, Any]] = [
        {"name": "config", "secret": {"secretName": config_secret, "defaultMode": SECRET_VOLUME_MODE}},
        {"name": "etc", "emptyDir": {}},
        {"name": "home", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": SECRETS_MOUNT, "readOnly": True},
        {"name": "etc", "mountPath": CONFIG_DIR},
        {"name": "home", "mountPath": HOME_DIR},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if ca_secret_key is not None:
        ca_secret, ca_key = ca_secret_key
        volumes.append(
            {
                "name": "ca",
                "secret": {
                    "secretName": ca_secret,
                    "items": [{"key": ca_key, "path": "ca.crt"}],
                    "defaultMode": SECRET_VOLUME_MODE,
                },
            }
        )
        mounts.append({"name": "ca", "mountPath": CA_MOUNT, "readOnly": True})
    # Credential files of spec.config (`<key>SecretRef` of a file setting), where config.toml points at them.
    plan = credential_plan(spec.config.values)
    volumes.extend(copy.deepcopy(plan.volumes))
    mounts.extend(copy.deepcopy(plan.volume_mounts))
    return volumes, mounts


def _container(spec: RunnerSpec, mounts: list[Any]) -> dict[str, Any]:
    """The manager container: gitlab-runner started by the start script, drained by its preStop hook."""
    manager = spec.manager
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": manager.image,
        "imagePullPolicy": manager.image_pull_policy,
        "command": ["/bin/sh", "-c", RUNNER_SCRIPT],
        "env": _env(manager.env),
        "ports": [{"name": METRICS_PORT_NAME, "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", drain_script(manager.drain_timeout)]}}},
        "livenessProbe": _probe(period=20, failure_threshold=3, initial_delay=15),
        "readinessProbe": _probe(period=10, failure_threshold=3, initial_delay=5),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }
    if manager.resources:
        container["resources"] = copy.deepcopy(dict(manager.resources))
    return container


def _security_context(pin_ids: bool) -> dict[str, Any]:
    context: dict[str, Any] = {"runAsNonRoot": True}
    if pin_ids:
        context |= {"runAsUser": RUN_AS_USER, "runAsGroup": RUN_AS_GROUP, "fsGroup": FS_GROUP}
    return context | {"seccompProfile": {"type": "RuntimeDefault"}}


def _pod_spec(
    spec: RunnerSpec,
    name: str,
    service_account: str,
    container: dict[str, Any],
    volumes: list[Any],
    pin_ids: bool,
) -> dict[str, Any]:
    manager = spec.manager
    pod_spec: dict[str, Any] = {
        # The kubernetes executor talks to the API server to create job pods, so the token is always mounted.
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        # The drain (preStop) first, then SIGTERM with shutdown_timeout left for the forceful path's last reports.
        "terminationGracePeriodSeconds": manager.drain_timeout + spec.config.shutdown_timeout,
        "securityContext": _security_context(pin_ids),
        "containers": [container],
        "volumes": volumes,
    }
    pod_spec["serviceAccountName"] = manager.service_account_name or service_account
    _set_if(pod_spec, "imagePullSecrets", [{"name": s} for s in manager.image_pull_secrets])
    _set_if(pod_spec, "nodeSelector", {k: manager.node_selector[k] for k in sorted(manager.node_selector)})
    _set_if(pod_spec, "tolerations", [copy.deepcopy(dict(t)) for t in manager.tolerations])
    _set_if(pod_spec, "affinity", copy.deepcopy(dict(manager.affinity)))
    _set_if(pod_spec, "priorityClassName", manager.priority_class_name)
    spread = manager.topology_spread_constraints
    _set_if(
        pod_spec, "topologySpreadConstraints", _default_spread(name) if spread is None else copy.deepcopy(list(spread))
    )
    return pod_spec


def _default_spread(name: str) -> list[dict[str, Any]]:
    """Replicas on different nodes where the cluster has them, so one node going away never takes every replica;
    never a reason to leave a pod unscheduled."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector_labels(name)},
        }
    ]


def build_statefulset(
    spec: RunnerSpec,
    *,
    name: str,
    namespace: str,
    owner: dict[str, Any],
    config_secret: str,
    config_checksum: str,
    service_account: str,
    ca_secret_key: tuple[str, str] | None = None,
    pin_ids: bool = True,
) -> dict[str, Any]:
    """The runner manager pods. `name` is the Runner's name (the StatefulSet shares it; see `child_names`).
    `service_account`: the operator's ServiceAccount for them, unless spec.manager.serviceAccountName names one.

    `config_checksum` goes into a pod template annotation, so pods roll exactly when it changes (pass
    `RenderedConfig.token_free_sha256` to keep token rotations restart-free). `ca_secret_key=(secret, key)`
    mounts that key at `CA_FILE`; render config.toml with `ca_path=CA_FILE` to match.
    """
    volumes, mounts = _volumes(spec, config_secret, ca_secret_key)
    pod_spec = _pod_spec(spec, name, service_account, _container(spec, mounts), volumes, pin_ids)
    # Ours last: a user's pod label or annotation can never break the selector or the checksum.
    pod_labels = {**spec.manager.pod_labels, **labels(name)}
    pod_annotations = {
        **spec.manager.pod_annotations,
        "kubectl.kubernetes.io/default-container": CONTAINER_NAME,
        ANNOTATION_CONFIG_CHECKSUM: config_checksum,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": child_metadata(name, namespace, owner, name),
        "spec": {
            "replicas": spec.replicas,
            # Runner managers are independent; and OrderedReady would wait for pod N to be Ready before N+1.
            "podManagementPolicy": "Parallel",
            "serviceName": name,
            "selector": {"matchLabels": selector_labels(name)},
            # Every replica rolls at once: one draining a long job never holds back the others (idle ones are back
            # in seconds). Needs the MaxUnavailableStatefulSet feature (beta, off by default in 1.35); without it
            # the apiserver drops the field and pods roll one at a time, each still drained.
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "100%"}},
            "template": {
                "metadata": {"labels": pod_labels, "annotations": pod_annotations},
                "spec": pod_spec,
            },
        },
    }
