"""Every stage's loader (so every stage CLI) reads every shipped composed config and its own stage configs.

A composed config (``configs/*.yaml``) includes stage YAMLs with ``from:`` at any depth; each stage
resolves them as the pipeline does, and gets the same section the pipeline validates.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.config import load_benchmarks_config
from clustering.config import load_clustering_config
from cohorts.run import load_cohorts_config
from embedders.bulk import load_bulk_config
from embedders.config import load_embedders_config
from fusion.config import load_fusion_config
from fusion.survival.run import load_survival_config
from pipeline.config import load_pipeline_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
LOADERS = {"cohorts": load_cohorts_config, "embedders": load_embedders_config, "benchmarks": load_benchmarks_config,
           "fusion": load_fusion_config, "clustering": load_clustering_config}
COMPOSED = sorted(CONFIGS.glob("*.yaml"))
OWN = sorted((stage, path) for stage in LOADERS for path in (CONFIGS / stage).glob("*.yaml")
             if not path.name.endswith("_bulk.yaml"))    # python -m embedders.bulk, checked below


def test_there_are_configs_to_check() -> None:
    assert len(COMPOSED) >= 4 and {s for s, _ in OWN} == set(LOADERS)


@pytest.mark.parametrize("path", COMPOSED, ids=lambda p: p.name)
def test_every_stage_reads_each_composed_config_as_the_pipeline_does(path: Path) -> None:
    _, sections = load_pipeline_config(path)
    for stage, cfg in sections.items():
        ours = LOADERS[stage](path)
        if stage == "embedders":     # the pipeline adds its own defaults (e.g. rebuild the run's store)
            assert type(ours) is type(cfg)
        else:
            assert ours == cfg, stage
    if "fusion" in sections:
        assert load_survival_config(path) == sections["fusion"].survival


@pytest.mark.parametrize("stage,path", OWN, ids=lambda v: v if isinstance(v, str) else v.name)
def test_every_stage_reads_its_own_configs(stage: str, path: Path) -> None:
    LOADERS[stage](path)


@pytest.mark.parametrize("path", sorted((CONFIGS / "survival").glob("*.yaml")), ids=lambda p: p.name)
def test_survival_reads_its_own_configs(path: Path) -> None:
    load_survival_config(path)


@pytest.mark.parametrize("path", sorted((CONFIGS / "embedders").glob("*_bulk.yaml")), ids=lambda p: p.name)
def test_bulk_import_reads_its_configs(path: Path) -> None:
    load_bulk_config(path)
