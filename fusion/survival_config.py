"""Config of the survival head (owned by the survival-head module; fusion.config embeds it)."""
from __future__ import annotations

from cohorts.config import StrictModel


class SurvivalConfig(StrictModel):
    """Selective-SSM survival head options."""

    enabled: bool = True
