"""`--model` / `LLM(model=...)` resolution: directories as given, repo ids from the local Hugging Face cache only."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.model_path import resolve_model_path


def cache_snapshot(hub: Path, repo_id: str, commit: str, ref: str = "main") -> Path:
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / ref).write_text(commit + "\n")
    return snapshot


def test_a_directory_is_taken_as_is(tmp_path: Path) -> None:
    assert resolve_model_path(tmp_path) == tmp_path


def test_a_repo_id_resolves_to_the_cached_snapshot_its_ref_names(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    snapshot = cache_snapshot(tmp_path / "hub", "zai-org/GLM-4.5-Air", "abc123")
    assert resolve_model_path("zai-org/GLM-4.5-Air") == snapshot
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert resolve_model_path("zai-org/GLM-4.5-Air") == snapshot


def test_missing_models_name_where_they_were_looked_for(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match="huggingface-cli download zai-org/GLM-4.5"):
        resolve_model_path("zai-org/GLM-4.5")
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        resolve_model_path(str(tmp_path / "no" / "such" / "dir"))


def test_glm_serve_serves_a_cached_repo_id_under_its_name(tmp_path: Path, monkeypatch) -> None:
    from server.cli import args_from_namespace, build_parser

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    snapshot = cache_snapshot(tmp_path / "hub", "zai-org/GLM-4.5-Air", "abc123")
    args = args_from_namespace(build_parser().parse_args(["--model", "zai-org/GLM-4.5-Air"]))
    assert Path(args.model) == snapshot and args.served_model_names == ("zai-org/GLM-4.5-Air",)
    with pytest.raises(SystemExit, match="huggingface-cli download"):
        args_from_namespace(build_parser().parse_args(["--model", "zai-org/GLM-4.6"]))
