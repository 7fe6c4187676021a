"""The built-in synthetic cohort: ``cohorts.demo.generate_demo`` writes a CSV-manifest layout that
the generic CSV adapter then ingests (so the demo exercises the same path as a user's CSV)."""
from __future__ import annotations

from pathlib import Path

from ..config import CsvSource, DemoSource
from .base import AdapterResult
from .csv_manifest import load_csv

LABELS = ("Atelectasis", "Edema", "Effusion", "Opacity")


def load_demo(cfg: DemoSource, *, out: Path) -> AdapterResult:
    """Generate the demo cohort under ``cfg.raw_dir`` (default ``out/raw``) and read it."""
    from ..demo import generate_demo  # the generator is only needed for demo sources

    raw_dir = cfg.raw_dir if cfg.raw_dir is not None else out / "raw"
    generate_demo(raw_dir, n_patients=cfg.n_patients, seed=cfg.seed, image_size=cfg.image_size, sites=cfg.sites,
                 workers=cfg.workers)
    csv = CsvSource(kind="csv", manifest=raw_dir / "manifest.csv", dataset="demo",
                    labels={name: name for name in LABELS}, extra_columns=["site"], clinical=raw_dir / "clinical.csv",
                    clinical_schema=raw_dir / "clinical_schema.json")
    return load_csv(csv)
