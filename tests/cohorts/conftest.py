"""Fixtures for the cohorts tests: real tables read once per session, small synthetic manifests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cohorts.adapters import AdapterResult
from cohorts.adapters.chexpert import load_chexpert
from cohorts.adapters.nih import load_nih
from cohorts.config import ChexpertSource, NihSource


@pytest.fixture(scope="session")
def label_tables(shared_data: Path) -> Path:
    return shared_data / "label-tables"


@pytest.fixture(scope="session")
def nih_result(label_tables: Path) -> AdapterResult:
    """The real NIH table (+ Google labels) through the adapter, once per session."""
    return load_nih(NihSource(kind="nih", table=label_tables / "Data_Entry_2017_v2020.csv.gz",
                              google_labels=label_tables / "google2019_nih-chest-xray-labels.csv.gz"))


@pytest.fixture(scope="session")
def chexpert_raw(label_tables: Path) -> pd.DataFrame:
    """The real CheXpert table read directly with pandas (the slow read: once per session)."""
    return pd.read_csv(label_tables / "chexpert_train.csv.gz")


@pytest.fixture(scope="session")
def chexpert_result(label_tables: Path) -> AdapterResult:
    return load_chexpert(ChexpertSource(kind="chexpert", table=label_tables / "chexpert_train.csv.gz"))


def write_png(path: Path, *, seed: int = 0, size: int = 32) -> Path:
    """A small random grey PNG (a real decodable image)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 255, (size, size), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path
