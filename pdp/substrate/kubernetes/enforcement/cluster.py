"""A list+watch cache of the cluster for the scheduler extender: node labels (for
nodeCacheCapable schedulers, which send only node names), which namespaces have pods on which
node (node occupancy, for dedicated isolation) and what each tenant holds where (holdings.py, for
the entitlement of each GPU class).

The event application (NodeIndex, PodIndex) is pure bookkeeping, tested without a server; the
ClusterState threads only feed it from the API server, re-listing on 410 Gone and reconnecting
with backoff on any other error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from pdp.substrate.kubernetes.enforcement.holdings import Holdings, Labels
from pdp.substrate.kubernetes.enforcement.pods import metadata_of, read_pod_event

log = logging.getLogger(__name__)

_PAGE = 500
_WATCH_SECONDS = 300


class Gone(Exception):
    """The watch's resource version is too old: list again."""


class NodeIndex:
    """Node name -> labels. A node's labels dict is replaced on every event, never changed in
    place, so readers may keep one without copying it."""

    def __init__(self) -> None:
        self.labels: dict[str, dict[str, str]] = {}

    def replace(self, nodes: Iterable[Mapping[str, Any]]) -> None:
        self.labels = {}
        for node in nodes:
            self.apply("ADDED", node)

    def apply(self, event_type: str, node: Mapping[str, Any]) -> None:
        metadata = metadata_of(node)
        name = metadata.get("name")
        if not isinstance(name, str):
            return
        if event_type == "DELETED":
            self.labels.pop(name, None)
        elif event_type in ("ADDED", "MODIFIED"):
            labels = metadata.get("labels") or {}
            self.labels[name] = {str(k): str(v) for k, v in labels.items()}


class PodIndex:
    """Node name -> {pod uid: namespace}, for pods bound to a node and not finished."""

    def __init__(self) -> None:
        self._where: dict[str, tuple[str, str]] = {}  # uid -> (node, namespace)
        self.by_node: dict[str, dict[str, str]] = {}

    def replace(self, pods: Iterable[Mapping[str, Any]]) -> None:
        self._where, self.by_node = {}, {}
        for pod in pods:
            self.apply("ADDED", pod)

    def _remove(self, uid: str) -> None:
        where = self._where.pop(uid, None)
        if where is None:
            return
        on_node = self.by_node.get(where[0], {})
        on_node.pop(uid, None)
        if not on_node:
            self.by_node.pop(where[0], None)

    def apply(self, event_type: str, pod: Mapping[str, Any]) -> None:
        event = read_pod_event(event_type, pod)
        if event is None:
            return
        self._remove(event.uid)
        if event.gone or event.node is None:
            return
        self._where[event.uid] = (event.node, event.namespace)
        self.by_node.setdefault(event.node, {})[event.uid] = event.namespace

    def namespaces_on(self, node: str, exclude_pod_uid: str | None = None) -> list[str]:
        pods = self.by_node.get(node, {})
        return sorted(ns for uid, ns in pods.items() if uid != exclude_pod_uid)

    def occupants(
        self, nodes: Iterable[str], exclude_pod_uid: str | None = None, gone: Collection[str] = ()
    ) -> dict[str, list[str]]:
        """Namespaces on each of `nodes` that has pods (other than the excluded one and those
        counted as `gone`: the victims a preemption would evict)."""
        found = {}
        by_node = self.by_node
        for node in nodes:
            if node in by_node:
                if gone:
                    pods = by_node[node]
                    namespaces = sorted(
                        ns for uid, ns in pods.items() if uid != exclude_pod_uid and uid not in gone
                    )
                else:
                    namespaces = self.namespaces_on(node, exclude_pod_uid)
                if namespaces:
                    found[node] = namespaces
        return found


def apply_node_event(index: NodeIndex, event_type: str, node: Mapping[str, Any]) -> None:
    index.apply(event_type, node)


def apply_pod_event(index: PodIndex, event_type: str, pod: Mapping[str, Any]) -> None:
    index.apply(event_type, pod)


class ClusterState:
    """Nodes, pods and namespaces of the cluster, kept current by list+watch in daemon threads."""

    labels_replaced = True
    """A node's labels dict is replaced when they change, never edited in place (NodeIndex): the
    extender's shape cache may recognise an unchanged node by its dict alone."""

    def __init__(
        self,
        api: k8s.ApiClient,
        *,
        max_backoff: float = 30.0,
        watch_seconds: int = _WATCH_SECONDS,
    ) -> None:
        self._core = k8s.CoreV1Api(api)
        self._lock = threading.Lock()
        self._nodes = NodeIndex()
        self._pods = PodIndex()
        self._holdings = Holdings()
        self._max_backoff = max_backoff
        self._watch_seconds = watch_seconds
        self._stop = threading.Event()
        self._responses: dict[str, Any] = {}
        self._ready = {"nodes": threading.Event(), "pods": threading.Event(), "namespaces": threading.Event()}
        self._threads = [
            threading.Thread(target=self._run, args=(kind,), name=f"cluster-{kind}", daemon=True)
            for kind in self._ready
        ]

    # -- reading ---------------------------------------------------------------------------------

    def node_labels(self, name: str) -> dict[str, str] | None:
        with self._lock:
            labels = self._nodes.labels.get(name)
            return dict(labels) if labels is not None else None

    def namespaces_on(self, node: str, exclude_pod_uid: str | None = None) -> list[str]:
        with self._lock:
            return self._pods.namespaces_on(node, exclude_pod_uid)

    # The extender's reads for a whole scheduling cycle: one lock, no copies (see NodeIndex).

    def labels_of(self, names: Iterable[str]) -> dict[str, Mapping[str, str]]:
        """Labels of each named node ({} for a node not known)."""
        empty: Mapping[str, str] = {}
        with self._lock:
            known = self._nodes.labels
            return {name: known.get(name, empty) for name in names}

    def occupants(
        self, nodes: Iterable[str], exclude_pod_uid: str | None = None, gone: Collection[str] = ()
    ) -> dict[str, list[str]]:
        with self._lock:
            return self._pods.occupants(nodes, exclude_pod_uid, gone)

    def held(
        self, namespace: str, exclude_pod_uid: str, project: Callable[[Labels], Labels]
    ) -> list[dict[str, Any]]:
        """What the tenant of `namespace` holds now (Holdings.held)."""
        with self._lock:
            known = self._nodes.labels
            empty: Labels = {}
            return self._holdings.held(
                namespace, exclude_pod_uid, lambda names: {n: known.get(n, empty) for n in names}, project
            )

    def allow(self, uid: str, namespace: str, gpus: Mapping[str, int], on: Iterable[Labels]) -> None:
        """The extender allowed the pod on nodes with these labels (Holdings.allow)."""
        with self._lock:
            self._holdings.allow(uid, namespace, gpus, on)

    # -- running ---------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> ClusterState:
        """Start watching; returns once nodes, pods and namespaces are listed (TimeoutError otherwise)."""
        for thread in self._threads:
            thread.start()
        for kind, ready in self._ready.items():
            if not ready.wait(timeout):
                self.stop()
                raise TimeoutError(f"could not list {kind} within {timeout:.0f} s")
        return self

    def stop(self) -> None:
        self._stop.set()
        for response in list(self._responses.values()):
            # Closing the response from here would wait for the watch thread's blocked read;
            # shutting the socket down ends that read at once.
            sock = getattr(getattr(response, "connection", None), "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=2)

    def __enter__(self) -> ClusterState:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, kind: str) -> Callable[..., Any]:
        if kind == "nodes":
            return self._core.list_node
        if kind == "namespaces":
            return self._core.list_namespace
        return self._core.list_pod_for_all_namespaces

    def _apply(self, kind: str, event_type: str, obj: Mapping[str, Any]) -> None:
        with self._lock:
            if kind == "nodes":
                self._nodes.apply(event_type, obj)
            elif kind == "namespaces":
                self._holdings.apply_namespace(event_type, obj)
            else:
                self._pods.apply(event_type, obj)
                self._holdings.apply_pod(event_type, obj)

    def _list(self, kind: str) -> str:
        items: list[Mapping[str, Any]] = []
        cont: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": _PAGE, "_preload_content": False, "_request_timeout": 60}
            if cont:
                kwargs["_continue"] = cont
            response = self._call(kind)(**kwargs)
            page = json.loads(response.data)
            items.extend(page.get("items") or [])
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                version = str((page.get("metadata") or {}).get("resourceVersion", ""))
                break
        with self._lock:
            if kind == "nodes":
                self._nodes.replace(items)
            elif kind == "namespaces":
                self._holdings.replace_namespaces(items)
            else:
                self._pods.replace(items)
                self._holdings.replace_pods(items)
        self._ready[kind].set()
        return version

    def _watch(self, kind: str, version: str) -> str:
        response = self._call(kind)(
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=self._watch_seconds,
            _preload_content=False,
            _request_timeout=(10, self._watch_seconds + 30),
        )
        self._responses[kind] = response
        try:
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                if self._stop.is_set():
                    break
                if not line.strip():
                    continue
                event = json.loads(line)
                event_type, obj = event.get("type"), event.get("object") or {}
                if event_type == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(obj.get("message", "resource version too old"))
                    raise ApiException(status=obj.get("code", 500), reason=obj.get("message", ""))
                if event_type != "BOOKMARK":
                    self._apply(kind, event_type, obj)
                version = str(metadata_of(obj).get("resourceVersion") or version)
        finally:
            self._responses.pop(kind, None)
            response.close()
        return version

    def _run(self, kind: str) -> None:
        backoff = 0.5
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._list(kind)
                version = self._watch(kind, version)
                backoff = 0.5
            except Gone:
                version = None  # re-list at once: the cache may have missed events
            except ApiException as exc:
                if exc.status == 410:
                    version = None
                    continue
                if self._stop.is_set():
                    return
                log.warning("watching %s failed (%s), retrying in %.1f s", kind, exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)
            except Exception as exc:
                if self._stop.is_set():
                    return
                log.warning("watching %s failed (%s), retrying in %.1f s", kind, exc, backoff)
                # After an unknown failure the stream may have lost events: list again.
                version = None
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff)
