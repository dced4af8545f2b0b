"""The default checkpoint sink (pdp/integrity/sinks.py, default_sink): outside the state folder
it protects, private, one per state folder, refused with the option to give where it cannot be had,
and taking over the checkpoints an earlier version kept inside the state folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from pdp.integrity.sinks import CHECKPOINT_HOME_ENV, SinkError, checkpoint_home, default_sink, open_sink

OPTION = "--records-checkpoints (or $PDP_RECORDS_CHECKPOINTS)"


def _path(spec: str) -> Path:
    scheme, _, path = spec.partition(":")
    assert scheme == "file", spec
    return Path(path)


def test_the_home_is_the_variable_else_the_xdg_state_home_else_local_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CHECKPOINT_HOME_ENV, str(tmp_path / "given"))
    assert checkpoint_home() == tmp_path / "given"
    monkeypatch.delenv(CHECKPOINT_HOME_ENV)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert checkpoint_home() == tmp_path / "xdg" / "gpupaas" / "checkpoints"
    monkeypatch.setenv("XDG_STATE_HOME", "relative")  # invalid by the spec: ignored
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert checkpoint_home() == tmp_path / "user" / ".local" / "state" / "gpupaas" / "checkpoints"


def test_the_default_sink_is_outside_the_state_folder_private_and_one_per_state_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CHECKPOINT_HOME_ENV, str(tmp_path / "home"))
    first = _path(default_sink(tmp_path / "a" / "state", "decisions.checkpoints.jsonl", OPTION))
    other = _path(default_sink(tmp_path / "b" / "state", "decisions.checkpoints.jsonl", OPTION))
    assert first != other and first.parent.parent == other.parent.parent == tmp_path / "home"
    assert not first.is_relative_to(tmp_path / "a" / "state")
    for folder in (tmp_path / "home", first.parent):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
    open_sink(f"file:{first}").put("c1", b'{"c":1}')
    assert first.stat().st_mode & 0o777 == 0o600
    # The same state folder, however it is named, finds the same sink again.
    again = default_sink(tmp_path / "a" / "x" / ".." / "state", "decisions.checkpoints.jsonl", OPTION)
    assert _path(again) == first


def test_a_home_inside_the_state_folder_or_unwritable_is_refused_naming_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv(CHECKPOINT_HOME_ENV, str(state / "checkpoints"))
    with pytest.raises(SinkError, match=r"inside the state folder .*give --records-checkpoints"):
        default_sink(state, "decisions.checkpoints.jsonl", OPTION)
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(CHECKPOINT_HOME_ENV, str(tmp_path / "file" / "home"))  # under a file
    with pytest.raises(
        SinkError, match=rf"cannot keep them in .*give --records-checkpoints .*{CHECKPOINT_HOME_ENV}"
    ):
        default_sink(state, "decisions.checkpoints.jsonl", OPTION)


def test_checkpoints_an_earlier_version_kept_in_the_state_folder_move_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CHECKPOINT_HOME_ENV, str(tmp_path / "home"))
    state = tmp_path / "state"
    state.mkdir()
    legacy = state / "decisions.checkpoints.jsonl"
    legacy.write_bytes(b'{"c":1}\n{"c":2}\n')
    spec = default_sink(state, legacy.name, OPTION, legacy=legacy)
    assert not legacy.exists() and list(open_sink(spec).entries()) == [b'{"c":1}', b'{"c":2}']
    assert _path(spec).stat().st_mode & 0o777 == 0o600
    # Only into a sink that holds nothing yet: never over checkpoints kept there since.
    legacy.write_bytes(b'{"c":9}\n')
    assert default_sink(state, legacy.name, OPTION, legacy=legacy) == spec
    assert legacy.exists() and list(open_sink(spec).entries()) == [b'{"c":1}', b'{"c":2}']
