"""The Kubernetes adapter's storage version migration at operator start (docs/operations/api-versions.md): the
objects of a CRD rewritten in its storage version, then the older versions dropped from status.storedVersions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import kubernetes
from kubernetes.client.exceptions import ApiException


@dataclass(frozen=True)
class StorageMigration:
    """What `migrate_storage` did for one CRD."""

    crd: str
    stored_before: tuple[str, ...]
    rewritten: int = 0
    done: bool = False  # status.storedVersions is [version] now


def migrate_storage(
    api: kubernetes.client.ApiClient, *, group: str, plural: str, version: str, page: int = 500
) -> StorageMigration:
    """Move every object of `plural.group` to the storage `version`, then drop the older versions from the CRD's
    status.storedVersions, so that a later CRD may stop serving them (docs/operations/api-versions.md).

    Each object is written back unchanged (a PUT of what was read): the API server encodes it in the storage version,
    and since those bytes differ from the stored ones it writes them (the way kube-storage-version-migrator works).
    A 409 means someone else wrote it since, which stored it in the new version too; a 404, that it is gone. Needs
    list and update on the objects in every namespace and a patch of the CRD's status; the CRD's storage version
    must already be `version`, otherwise the writes would store the old one again."""
    crds = kubernetes.client.ApiextensionsV1Api(api)
    custom = kubernetes.client.CustomObjectsApi(api)
    name = f"{plural}.{group}"
    crd = crds.read_custom_resource_definition(name)
    stored = tuple((crd.status and crd.status.stored_versions) or ())
    storage = [v.name for v in crd.spec.versions if v.storage]
    if stored == (version,) or storage != [version]:
        return StorageMigration(name, stored, done=stored == (version,))
    rewritten, token = 0, None
    while True:
        listing = cast(
            dict[str, Any], custom.list_cluster_custom_object(group, version, plural, limit=page, _continue=token)
        )
        for item in listing.get("items", []):
            meta = item["metadata"]
            try:
                custom.replace_namespaced_custom_object(group, version, meta["namespace"], plural, meta["name"], item)
                rewritten += 1
            except ApiException as exc:
                if exc.status not in (404, 409):
                    raise
        token = (listing.get("metadata") or {}).get("continue")
        if not token:
            break
    # The test op makes the drop conditional on storedVersions as read: a concurrent change fails it (422).
    crds.patch_custom_resource_definition_status(
        name,
        [
            {"op": "test", "path": "/status/storedVersions", "value": list(stored)},
            {"op": "replace", "path": "/status/storedVersions", "value": [version]},
        ],
    )
    return StorageMigration(name, stored, rewritten, done=True)
