"""Fixtures of the survival-head tests: lifelines' rossi table (real recidivism data with tied times)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="session")
def rossi() -> pd.DataFrame:
    """Rossi et al. (1980) recidivism data shipped with lifelines: 432 rows, `week` (ties), `arrest`."""
    from lifelines.datasets import load_rossi

    return load_rossi()


@pytest.fixture(scope="session")
def rossi_fit(rossi: pd.DataFrame):
    """lifelines CoxPHFitter (Efron ties, no penalty) fitted on rossi."""
    from lifelines import CoxPHFitter

    return CoxPHFitter().fit(rossi, "week", "arrest")


@pytest.fixture(scope="session")
def rossi_xte(rossi: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X (432, 7) float64, time (432,), event (432,)) of rossi."""
    x = rossi.drop(columns=["week", "arrest"]).to_numpy(float)
    return x, rossi["week"].to_numpy(float), rossi["arrest"].to_numpy(float)
