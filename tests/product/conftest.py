"""The product API against a real worker: the worker fixture of tests/lifecycle/conftest.py."""

from tests.lifecycle.conftest import worker

__all__ = ["worker"]
