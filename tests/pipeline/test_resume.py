"""Partial outputs of an interrupted stage are resumed only when the stages before it did not rerun."""
from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from pydantic import BaseModel

import pipeline.config as pipeline_config
import pipeline.run as pipeline_run
from pipeline.stages import Stage


class SourceConfig(BaseModel):
    value: int = 0


class ResumableConfig(BaseModel):
    pass


def run_source(cfg: SourceConfig, *, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "data.txt").write_text(str(cfg.value))
    return {}


def run_resumable(cfg: ResumableConfig, *, source: Path, out: Path) -> dict[str, Path]:
    """Keeps a 'partial' file like a store's finished rows; records whether it found one."""
    out.mkdir(parents=True, exist_ok=True)
    partial = out / "partial.txt"
    (out / "how.txt").write_text("resumed" if partial.exists() else "fresh")
    partial.write_text((source / "data.txt").read_text())
    return {}


@pytest.fixture
def fake_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("fake_stages")
    module.__dict__.update(SourceConfig=SourceConfig, ResumableConfig=ResumableConfig, run_source=run_source,
                           run_resumable=run_resumable)
    monkeypatch.setitem(sys.modules, "fake_stages", module)
    stages = (Stage("source", "pipeline", "fake_stages:SourceConfig", "fake_stages:run_source", lambda run, _: {}),
              Stage("derived", "pipeline", "fake_stages:ResumableConfig", "fake_stages:run_resumable",
                    lambda run, _: {"source": run / "source"}))
    monkeypatch.setattr(pipeline_run, "STAGES", stages)
    monkeypatch.setattr(pipeline_config, "STAGES", stages)
    monkeypatch.setattr(pipeline_config, "TOP_LEVEL_KEYS", {"name", "source", "derived"})
    monkeypatch.setattr(pipeline_run, "write_report", lambda run_dir, **_: run_dir / "report.html")


def _run(config: Path, out: Path, value: int, **kwargs) -> tuple[dict, str]:
    config.write_text(f"name: t\nsource: {{value: {value}}}\nderived: {{}}\n")
    pipeline_run.run_pipeline(config, out=out, **kwargs)
    return json.loads((out / "stages.json").read_text()), (out / "derived" / "how.txt").read_text()


def test_interrupted_stage_resumes_unless_its_inputs_were_rebuilt(fake_stages, tmp_path: Path) -> None:
    config, out = tmp_path / "run.yaml", tmp_path / "out"
    stages, how = _run(config, out, 1)
    assert [s["status"] for s in stages.values()] == ["ran", "ran"] and how == "fresh"
    (out / "derived" / ".stage.json").unlink()                     # killed before it finished
    stages, how = _run(config, out, 1)
    assert [s["status"] for s in stages.values()] == ["cached", "ran"] and how == "resumed"
    (out / "derived" / ".stage.json").unlink()
    stages, how = _run(config, out, 2)                               # the source changed meanwhile
    assert [s["status"] for s in stages.values()] == ["ran", "ran"] and how == "fresh"
    assert (out / "derived" / "partial.txt").read_text() == "2"
    stages, how = _run(config, out, 2, force=("derived",))           # forced: no stale partial either
    assert [s["status"] for s in stages.values()] == ["cached", "ran"] and how == "fresh"


def test_a_stage_that_checks_its_own_inputs_resumes_after_an_upstream_rerun(fake_stages, monkeypatch,
                                                                            tmp_path: Path) -> None:
    stages = tuple(Stage(s.name, s.package, s.config_model, s.entry, s.inputs, checks_own_inputs=s.name == "derived")
                   for s in pipeline_run.STAGES)
    monkeypatch.setattr(pipeline_run, "STAGES", stages)
    monkeypatch.setattr(pipeline_config, "STAGES", stages)
    config, out = tmp_path / "run.yaml", tmp_path / "out"
    _run(config, out, 1)
    stages_run, how = _run(config, out, 2)                           # the source reran: derived keeps its partial
    assert [s["status"] for s in stages_run.values()] == ["ran", "ran"] and how == "resumed"
    stages_run, how = _run(config, out, 2, force=("derived",))       # forcing still starts afresh
    assert how == "fresh"
