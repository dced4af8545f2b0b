"""The Kubernetes adapter: server-side apply with the official client.

PATCH with content type application/apply-patch+yaml, one field manager and force=True, so the
platform owns the fields it sets and applying the same object twice is a no-op on the server.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kubernetes import config
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as TransportError

from pdp.substrate.kubernetes.resources import resource
from pdp.substrate.kubernetes.workload import DEPLOYMENT_LABEL
from pdp.substrate.labels import POOL_LABEL, TENANT_LABEL

FIELD_MANAGER = "gpupaas-lifecycle"


def object_path(obj: Mapping[str, Any]) -> str:
    """The REST path of one object (pure)."""
    plural, namespaced = resource(str(obj["kind"]))
    api_version = str(obj["apiVersion"])
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    meta = obj["metadata"]
    ns = f"/namespaces/{meta['namespace']}" if namespaced else ""
    return f"{base}{ns}/{plural}/{meta['name']}"


class ObjectRefused(ApiException):
    """The API server refused an object as invalid (422), e.g. a change to an immutable field of
    one that exists. Said in one sentence naming the object and the server's reason, since it is
    what a failed onboarding or change reports; still an ApiException for callers that check
    the status."""

    def __init__(self, obj: Mapping[str, Any], refused: ApiException) -> None:
        super().__init__(status=refused.status, reason=refused.reason)
        self.body = refused.body
        try:
            reason = str(json.loads(refused.body or "{}").get("message") or refused.reason)
        except ValueError:
            reason = str(refused.body or refused.reason)
        meta = obj.get("metadata", {})
        where = f"{meta['namespace']}/" if meta.get("namespace") else ""
        self.sentence = f"{obj.get('kind')} {where}{meta.get('name')}: the API server refused it: {reason}"

    def __str__(self) -> str:
        return self.sentence


class KubernetesAdapter:
    mode = "kubernetes"

    def __init__(
        self, kubeconfig: str | None = None, *, context: str | None = None, api: ApiClient | None = None
    ) -> None:
        """From a kubeconfig file (its `context`, default its current one), an existing client, or
        (neither given) the pod's service account."""
        self.api: Any
        if api is not None:
            self.api = api
        elif kubeconfig:
            self.api = config.new_client_from_config(kubeconfig, context=context)  # type: ignore[no-untyped-call]
        else:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            self.api = ApiClient()
        self.server = str(self.api.configuration.host)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        method_, url, headers, body, post = self.api.param_serialize(
            method, path, auth_settings=["BearerToken"], **kwargs
        )
        try:
            # (connect, read): a cluster that is down is told apart quickly from a slow one.
            response = self.api.call_api(method_, url, headers, body, post, _request_timeout=(5, 30))
        except TransportError as exc:
            # The API server cannot be reached (refused, reset, timed out): not an answer about
            # the object. Callers that must not skip a cluster wait and retry on ConnectionError.
            raise ConnectionError(f"{self.server} unreachable: {type(exc).__name__}: {exc}") from exc
        data = response.read()
        if not 200 <= response.status < 300:
            raise ApiException(
                status=response.status, reason=response.reason, body=data.decode(errors="replace")
            )
        return json.loads(data) if data else None

    def apply(
        self, obj: Mapping[str, Any], *, field_manager: str = FIELD_MANAGER, subresource: str = ""
    ) -> None:
        """Server-side apply of `obj` (or of its `subresource`, e.g. status) as `field_manager`."""
        path = object_path(obj) + (f"/{subresource}" if subresource else "")
        try:
            self._call(
                "PATCH",
                path,
                query_params=[("fieldManager", field_manager), ("force", "true")],
                header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
                body=dict(obj),
            )
        except ApiException as exc:
            if exc.status == 422:
                raise ObjectRefused(obj, exc) from exc
            raise

    def get(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self._call(
                "GET", object_path(obj), header_params={"Accept": "application/json"}
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def delete(self, obj: Mapping[str, Any]) -> None:
        try:
            self._call("DELETE", object_path(obj), header_params={"Accept": "application/json"})
        except ApiException as exc:
            if exc.status != 404:
                raise

    def exists(self, obj: Mapping[str, Any]) -> bool:
        found = self.get(obj)
        return found is not None and not found.get("metadata", {}).get("deletionTimestamp")

    def gone(self, obj: Mapping[str, Any]) -> bool:
        # A deletionTimestamp is not enough: a Terminating namespace still holds its objects.
        return self.get(obj) is None

    def _list(self, path: str, **selectors: str) -> list[dict[str, Any]]:
        query = [(k, v) for k, v in (("labelSelector", selectors.get("labels", "")),
                                     ("fieldSelector", selectors.get("fields", ""))) if v]  # fmt: skip
        found = self._call("GET", path, query_params=query, header_params={"Accept": "application/json"})
        return list(found.get("items", []))

    def nodes(self) -> list[dict[str, Any]] | None:
        """The nodes of the platform's pools (labelled gpupaas.io/pool)."""
        return [
            {
                "name": n["metadata"]["name"],
                "labels": dict(n["metadata"].get("labels") or {}),
                "taints": list((n.get("spec") or {}).get("taints") or []),
            }
            for n in self._list("/api/v1/nodes", labels=POOL_LABEL)
        ]

    def occupancy(self, nodes: list[str]) -> dict[str, list[dict[str, str]]]:
        """The lifecycle's pods (labelled with tenant and deployment) bound to those nodes."""
        wanted = set(nodes)
        out: dict[str, list[dict[str, str]]] = {}
        for pod in self._list("/api/v1/pods", labels=f"{TENANT_LABEL},{DEPLOYMENT_LABEL}"):
            node = (pod.get("spec") or {}).get("nodeName")
            if node in wanted and not pod["metadata"].get("deletionTimestamp"):
                labels = pod["metadata"]["labels"]
                entry = {"tenant": labels[TENANT_LABEL], "deployment": labels[DEPLOYMENT_LABEL]}
                if entry not in out.setdefault(node, []):
                    out[node].append(entry)
        return out

    def close(self) -> None:
        self.api.close()


__all__ = ["FIELD_MANAGER", "KubernetesAdapter", "object_path"]
