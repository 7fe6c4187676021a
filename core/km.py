"""Kaplan-Meier curves with the number-at-risk table under the axes, the way clinical papers show them."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def plot_km(ax, curves: Iterable[tuple[str, np.ndarray, np.ndarray]], *, ci: bool = True) -> list:
    """Draw one Kaplan-Meier curve per ``(label, time, event)`` on ``ax`` and the number at risk under it.

    ``time`` in the unit of the x axis, ``event`` 1 observed / 0 censored. The at-risk row of each curve is
    named by the part of its label before `` (`` (e.g. ``"S1 (n=120, events=30)"`` -> ``S1``). Returns the
    fitted ``lifelines.KaplanMeierFitter`` objects; call ``fig.tight_layout()`` afterwards so the table fits.
    """
    from lifelines import KaplanMeierFitter
    from lifelines.plotting import add_at_risk_counts

    fitters = []
    for label, time, event in curves:
        kmf = KaplanMeierFitter(label=label.split(" (")[0]).fit(np.asarray(time, float), np.asarray(event, int))
        kmf.plot_survival_function(ax=ax, ci_show=ci, label=label)
        fitters.append(kmf)
    if fitters:
        add_at_risk_counts(*fitters, ax=ax, rows_to_show=["At risk"], fontsize=8)
    return fitters
