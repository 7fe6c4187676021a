"""Dataset adapters: one module per raw layout, each returning an :class:`AdapterResult`."""
from __future__ import annotations

from pathlib import Path

from ..config import DemoSource, SourceConfig
from .base import AdapterResult
from .chexpert import load_chexpert
from .covid_chestxray import load_covid_chestxray
from .csv_manifest import load_csv
from .demo import load_demo
from .emory import load_emory
from .hannover import load_hannover
from .mimic import load_mimic
from .nih import load_nih

LOADERS = {"nih": load_nih, "chexpert": load_chexpert, "mimic": load_mimic,
           "covid-chestxray": load_covid_chestxray, "hannover": load_hannover, "csv": load_csv,
           "emory": load_emory}


def load_source(cfg: SourceConfig, *, out: Path) -> AdapterResult:
    """Run the adapter of ``cfg.kind`` (the demo source writes its raw files under ``out``)."""
    if isinstance(cfg, DemoSource):
        return load_demo(cfg, out=out)
    return LOADERS[cfg.kind](cfg)


__all__ = ["AdapterResult", "LOADERS", "load_source"]
