"""The lifecycle realizing tenants on a real Kubernetes API server: the worker and control plane
fixtures of tests/lifecycle/conftest.py."""

from tests.lifecycle.conftest import kube, worker

__all__ = ["kube", "worker"]
