"""tests/artifacts.py: the path a build script prints, and the refusal while scripts/test's
background builds are still under way (its first pytest pass sets PDP_TEST_BUILDS_PENDING=1)."""

from __future__ import annotations

import pytest

from tests.artifacts import cached_artifact


def test_the_path_the_script_prints_last() -> None:
    folder = cached_artifact("fetch-argocd-crds", timeout=900)
    assert (folder / "application-crd.yaml").is_file()


def test_a_test_of_the_first_pass_asking_for_a_build_is_told_where_it_belongs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PDP_TEST_BUILDS_PENDING", "1")
    cached_artifact.cache_clear()
    with pytest.raises(RuntimeError, match=r"needs scripts/build-helm, .* add its file to `after_builds`"):
        cached_artifact("build-helm")
