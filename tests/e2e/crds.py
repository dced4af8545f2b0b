"""CustomResourceDefinitions created in a test kube-apiserver and waited for until established,
as `kubectl wait --for=condition=Established` does."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from kubernetes import client


def create_crds(api: client.ApiClient, crds: Iterable[dict[str, Any]], exist_ok: bool = False) -> list[str]:
    """Creates each CRD (one already there is kept when `exist_ok`), then waits until every one is
    established; returns their names."""
    ext = client.ApiextensionsV1Api(api)
    names = []
    for crd in crds:
        try:
            ext.create_custom_resource_definition(crd)
        except client.exceptions.ApiException as exc:
            if not (exist_ok and exc.status == 409):
                raise
        names.append(crd["metadata"]["name"])
    wait_established(ext, names)
    return names


def wait_established(ext: client.ApiextensionsV1Api, names: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            status = ext.read_custom_resource_definition(name).status
            conditions = {c.type: c.status for c in (status.conditions or [])} if status else {}
            if conditions.get("Established") == "True":
                break
            assert time.monotonic() < deadline, f"CRD {name} not established: {conditions}"
            time.sleep(0.1)
