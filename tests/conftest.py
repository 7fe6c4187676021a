"""Shared test fixtures: the location of ../shared (real data and weights), skipped when absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CXR_FUSION_SHARED", REPO.parent / "shared")).resolve()
SHARED_DATA = SHARED / "data"
SHARED_MODELS = SHARED / "models"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test when it is not there (CI always has it)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set CXR_FUSION_SHARED)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_models() -> Path:
    """Path to ../shared/models; skips the test when it is not there."""
    if not SHARED_MODELS.is_dir():
        pytest.skip(f"real weights not found at {SHARED_MODELS} (set CXR_FUSION_SHARED)")
    return SHARED_MODELS
