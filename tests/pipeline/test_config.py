"""The composed pipeline config rejects unknown sections with a message naming the file."""
from __future__ import annotations

from pathlib import Path

import pytest

from cohorts.config import ConfigError
from pipeline.config import load_pipeline_config


def test_unknown_top_level_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("name: x\nclusterng: {}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*clusterng"):
        load_pipeline_config(cfg)


def test_missing_required_section(tmp_path: Path) -> None:
    cfg = tmp_path / "partial.yaml"
    cfg.write_text("name: x\n")
    with pytest.raises(ConfigError, match="missing section 'cohorts'"):
        load_pipeline_config(cfg)
