"""Characterisation of subtypes: Table 1, label enrichment, survival, image montages.

* Table 1: continuous variables as median [Q1, Q3] with the Kruskal-Wallis test; binary and
  categorical as n (%) of non-missing values with the chi-square test, or Fisher's exact test for
  2x2 tables with an expected count below 5. Missing counts are shown, never imputed. A p-value of
  a column the clustered latent was built from is descriptive only (``p_use``): the subtypes were
  made to differ in it, so the test's null hypothesis is false by construction (double dipping).
* Outcomes are per patient: :func:`per_patient` collapses image-level units first.
* Label enrichment: per label and subtype, prevalence among labelled points (1 vs 0; -1 uncertain and
  missing are left out and counted), odds ratio against the other subtypes with Fisher's exact test,
  Benjamini-Hochberg q-values.
* Survival: Kaplan-Meier per subtype, multivariate log-rank test, Cox hazard ratios against the
  largest subtype (lifelines); a ratio or CI bound that is not finite or beyond ``[1/max_ratio,
  max_ratio]`` is flagged ``estimable: False`` (separation: a group without events) and must be
  shown in words, never as a number.
* Montage: a seeded sample of images per subtype loaded with ``cohorts.images.load_image``.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import stats  # noqa: E402

from core.km import plot_km  # noqa: E402

from .figures import save_figure  # noqa: E402

log = logging.getLogger(__name__)

OVERALL = "Overall"


def _groups(subtype: pd.Series) -> list[str]:
    return sorted(subtype.dropna().unique(), key=lambda s: (len(str(s)), str(s)))


def table1_stats(df: pd.DataFrame, schema: dict[str, dict], *, subtype: str = "subtype") -> pd.DataFrame:
    """Long table of Table 1 numbers: one row per (variable, level, group) with n and the statistics.

    ``schema`` maps column -> {"type": continuous|binary|categorical, "unit": ...}. Continuous rows
    carry ``median, q1, q3, n``; categorical/binary rows carry ``count, n, percent`` (of non-missing).
    """
    rows = []
    groups = [(OVERALL, df)] + [(g, df[df[subtype] == g]) for g in _groups(df[subtype])]
    for var, spec in schema.items():
        if var not in df.columns:
            continue
        for gname, part in groups:
            col = part[var]
            missing = int(col.isna().sum())
            if spec["type"] == "continuous":
                v = pd.to_numeric(col, errors="coerce").dropna().astype(float)
                q1, med, q3 = (np.quantile(v, [0.25, 0.5, 0.75]) if len(v) else (np.nan,) * 3)
                rows.append({"variable": var, "level": "", "group": gname, "n": len(v), "missing": missing,
                             "median": med, "q1": q1, "q3": q3})
            else:
                v = col.dropna()
                levels = [1] if spec["type"] == "binary" else _levels(df[var])
                for lev in levels:
                    cnt = int((v.astype(str) == str(lev)).sum()) if spec["type"] != "binary" else int((v.astype(float) == 1).sum())
                    rows.append({"variable": var, "level": str(lev), "group": gname, "n": len(v), "missing": missing,
                                 "count": cnt, "percent": 100.0 * cnt / len(v) if len(v) else np.nan})
    return pd.DataFrame(rows)


def _levels(col: pd.Series) -> list:
    return sorted(col.dropna().astype(str).unique())


def table1_test(df: pd.DataFrame, var: str, kind: str, *, subtype: str = "subtype") -> tuple[str, float]:
    """The test for one variable across subtypes and its p-value (NaN when it cannot be computed)."""
    d = df[[var, subtype]].dropna()
    groups = _groups(d[subtype])
    if len(groups) < 2 or d.empty:
        return "n/a", float("nan")
    if kind == "continuous":
        samples = [pd.to_numeric(d.loc[d[subtype] == g, var], errors="coerce").dropna() for g in groups]
        samples = [s for s in samples if len(s)]
        if len(samples) < 2 or pd.concat(samples).nunique() < 2:
            return "Kruskal-Wallis", float("nan")
        return "Kruskal-Wallis", float(stats.kruskal(*samples).pvalue)
    table = pd.crosstab(d[subtype], d[var].astype(str)).to_numpy()
    if table.shape[1] < 2:
        return "chi-square", float("nan")
    expected = stats.contingency.expected_freq(table)
    if table.shape == (2, 2) and (expected < 5).any():
        return "Fisher exact", float(stats.fisher_exact(table).pvalue)
    return ("chi-square" + (" (expected < 5)" if (expected < 5).any() else ""),
            float(stats.chi2_contingency(table, correction=False).pvalue))


DESCRIPTIVE = "descriptive only: an input of the clustered latent"


def per_patient(units: pd.DataFrame, *, subtype: str = "subtype") -> tuple[pd.DataFrame, int]:
    """One row per patient: image-level units collapse to the patient's most frequent subtype (ties: the
    lower S number) and its first row's other columns; also how many patients' images span several subtypes."""
    if "image_id" not in units.columns:
        return units, 0
    counts = units.groupby(["patient_id", subtype]).size().reset_index(name="n")
    counts = counts.assign(_order=counts[subtype].map(lambda s: (len(str(s)), str(s))))
    mode = counts.sort_values(["patient_id", "n", "_order"], ascending=[True, False, True]).drop_duplicates("patient_id")
    split = int((counts.groupby("patient_id").size() > 1).sum())
    first = units.drop(columns=[subtype]).groupby("patient_id", sort=False).first().reset_index()
    return first.merge(mode[["patient_id", subtype]], on="patient_id", how="left"), split


def table1(df: pd.DataFrame, schema: dict[str, dict], *, subtype: str = "subtype",
           descriptive: set[str] = frozenset()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Formatted Table 1 (variables x groups, test, p, p_use) and the long numbers it was formatted from.

    ``descriptive`` names the columns whose p-value is descriptive only (inputs of the clustered latent).
    """
    st = table1_stats(df, schema, subtype=subtype)
    if st.empty:
        return pd.DataFrame(columns=["variable", "level", OVERALL, "test", "p", "p_use"]), st
    out = []
    for var, vpart in st.groupby("variable", sort=False):
        spec = schema[var]
        unit = f" ({spec['unit']})" if spec.get("unit") else ""
        test, p = table1_test(df, var, spec["type"], subtype=subtype)
        for i, (lev, part) in enumerate(vpart.groupby("level", sort=False)):
            row = {"variable": f"{var}{unit}", "level": lev if spec["type"] == "categorical" else ""}
            for _, r in part.iterrows():
                if spec["type"] == "continuous":
                    cell = "-" if r.n == 0 else f"{r['median']:.3g} [{r.q1:.3g}, {r.q3:.3g}]"
                else:
                    cell = "-" if r.n == 0 else f"{int(r['count'])} ({r.percent:.1f}%)"
                row[r.group] = cell + (f"; {int(r.missing)} missing" if r.missing else "")
            row.update({"test": test if i == 0 else "", "p": p if i == 0 else np.nan,
                        "p_use": ("" if i or np.isnan(p) else DESCRIPTIVE if var in descriptive else "test")})
            out.append(row)
    return pd.DataFrame(out), st


def bh_qvalues(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (NaN kept)."""
    p = np.asarray(p, float)
    q = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        q[ok] = stats.false_discovery_control(p[ok], method="bh")
    return q


def label_enrichment(df: pd.DataFrame, label_cols: list[str], *, subtype: str = "subtype") -> pd.DataFrame:
    """Per label and subtype: prevalence among 1/0 labelled points, odds ratio vs the rest, Fisher p, BH q."""
    rows = []
    for lab in label_cols:
        y = pd.to_numeric(df[lab], errors="coerce")
        for g in _groups(df[subtype]):
            inside = df[subtype] == g
            a = int(((y == 1) & inside).sum())
            b = int(((y == 0) & inside).sum())
            c = int(((y == 1) & ~inside).sum())
            d = int(((y == 0) & ~inside).sum())
            odds, p = (stats.fisher_exact([[a, b], [c, d]]) if (a + b) and (c + d) else (np.nan, np.nan))
            rows.append({"label": lab, "subtype": g, "present": a, "absent": b,
                         "uncertain": int(((y == -1) & inside).sum()), "not_mentioned": int((y.isna() & inside).sum()),
                         "prevalence": a / (a + b) if a + b else np.nan,
                         "prevalence_rest": c / (c + d) if c + d else np.nan, "odds_ratio": odds, "p": p})
    out = pd.DataFrame(rows)
    if not out.empty:
        out["q_bh"] = bh_qvalues(out.p.to_numpy())
    return out


def _survival_frame(df: pd.DataFrame, *, time: str, event: str, subtype: str) -> pd.DataFrame:
    """The complete ``time``/``event``/``subtype`` rows, time as float and event as int."""
    d = df[[time, event, subtype]].dropna()
    return d.assign(**{time: d[time].astype(float), event: d[event].astype(float).astype(int)})


def survival(df: pd.DataFrame, *, time: str, event: str, subtype: str = "subtype",
             figure: Path | None = None, max_ratio: float = 1000.0) -> dict[str, object]:
    """Multivariate log-rank p and Cox HRs vs the largest subtype (one row per patient); with ``figure``, the
    Kaplan-Meier PNG of :func:`plot_survival` too."""
    from lifelines import CoxPHFitter
    from lifelines.statistics import multivariate_logrank_test

    d = _survival_frame(df, time=time, event=event, subtype=subtype)
    groups = _groups(d[subtype])
    result: dict[str, object] = {"n": int(len(d)), "events": int(d[event].sum()), "excluded_missing": int(len(df) - len(d)),
                                 "groups": [{"subtype": str(g), "n": int((d[subtype] == g).sum()),
                                             "events": int(d.loc[d[subtype] == g, event].sum())} for g in groups]}
    if len(groups) < 2 or d[event].sum() == 0:
        result["note"] = "fewer than 2 subtypes or no events: no survival comparison"
        return result
    lr = multivariate_logrank_test(d[time], d[subtype], d[event])
    result.update({"logrank_chi2": float(lr.test_statistic), "logrank_df": int(len(groups) - 1), "logrank_p": float(lr.p_value)})
    if figure is not None:
        result["figure"] = str(plot_survival(d, time=time, event=event, logrank_p=lr.p_value, path=figure,
                                             subtype=subtype))
    ref = d[subtype].value_counts().sort_index(key=lambda s: s.map(lambda g: (len(g), g))).idxmax()
    dummies = pd.get_dummies(d[subtype], dtype=float).drop(columns=[ref])
    cox_df = pd.concat([d[[time, event]], dummies], axis=1)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cph = CoxPHFitter(penalizer=0.0).fit(cox_df, duration_col=time, event_col=event)
        if caught:
            result["cox_warnings"] = sorted({str(w.message).strip().split("\n")[0] for w in caught})
        s = cph.summary
        result["cox_reference"] = ref
        result["cox"] = [{"subtype": str(k), "hr": float(r["exp(coef)"]), "ci_low": float(r["exp(coef) lower 95%"]),
                          "ci_high": float(r["exp(coef) upper 95%"]), "p": float(r["p"]),
                          "estimable": hr_estimable(r["exp(coef)"], r["exp(coef) lower 95%"], r["exp(coef) upper 95%"],
                                                    max_ratio=max_ratio)} for k, r in s.iterrows()]
        result["c_index"] = float(cph.concordance_index_)
    except Exception as exc:  # lifelines raises ConvergenceError and linear-algebra errors on degenerate data
        result["cox_error"] = f"Cox model not estimable: {exc}"
        log.warning("Cox model not estimable: %s", exc)
    return result


def plot_survival(df: pd.DataFrame, *, time: str, event: str, logrank_p: float, path: Path,
                  subtype: str = "subtype") -> Path:
    """Kaplan-Meier curves per subtype (one row per patient; ``logrank_p`` from :func:`survival`) -> PNG."""
    d = _survival_frame(df, time=time, event=event, subtype=subtype)
    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=110)
    plot_km(ax, [(f"{g} (n={len(part)}, events={int(part[event].sum())})", part[time], part[event])
                 for g in _groups(d[subtype]) for part in [d[d[subtype] == g]]])
    ax.set_xlabel(f"{time} (days)")
    ax.set_ylabel("survival probability")
    ax.set_title(f"Kaplan-Meier by subtype (log-rank p = {logrank_p:.2g})", fontsize=10)
    return save_figure(fig, path)


def hr_estimable(hr: float, low: float, high: float, *, max_ratio: float) -> bool:
    """False when a hazard ratio or its CI bound is not finite or beyond ``[1/max_ratio, max_ratio]``."""
    values = np.array([hr, low, high], float)
    return bool(np.isfinite(values).all() and (values > 1 / max_ratio).all() and (values < max_ratio).all())


def cox_table(cox: list[dict[str, object]]) -> pd.DataFrame:
    """Cox rows for display: ``hazard ratio [95% CI]`` and p, or 'not estimable' in words."""
    return pd.DataFrame([{"subtype": r["subtype"],
                          "hazard ratio [95% CI]": (f"{r['hr']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
                                                    if r.get("estimable", True) else
                                                    "not estimable (no or almost no events in a group)"),
                          "p": f"{r['p']:.3g}" if r.get("estimable", True) else ""} for r in cox])


Tiles = list[tuple[str, list[np.ndarray]]]   # per subtype: its name and its sample images (tile x tile uint8)


def montage_tiles(paths: pd.Series, subtype: pd.Series, *, per_subtype: int, tile: int, seed: int
                  ) -> tuple[Tiles, list[dict[str, str]]]:
    """A seeded sample of up to ``per_subtype`` images per subtype as square tiles, plus the images that failed to load."""
    from PIL import Image

    from cohorts.images import ImageError, load_image

    rng = np.random.default_rng(seed)
    errors: list[dict[str, str]] = []
    rows = []
    for g in _groups(subtype):
        cand = paths[(subtype == g) & paths.notna()]
        order = rng.permutation(len(cand))
        tiles = []
        for i in order:
            if len(tiles) == per_subtype:
                break
            p = cand.iloc[i]
            try:
                img = load_image(p)
            except ImageError as exc:
                errors.append({"path": Path(str(p)).name, "stage": "clustering.montage", "reason": exc.reason})
                continue
            im = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
            im.thumbnail((tile, tile))
            canvas = np.zeros((tile, tile), np.uint8)
            a = np.asarray(im)
            y0, x0 = (tile - a.shape[0]) // 2, (tile - a.shape[1]) // 2
            canvas[y0:y0 + a.shape[0], x0:x0 + a.shape[1]] = a
            tiles.append(canvas)
        rows.append((g, tiles))
    return rows, errors


def plot_montage(rows: Tiles, *, per_subtype: int, figure: Path, title: str = "Sample images per subtype") -> Path | None:
    """Grid of the tiles of :func:`montage_tiles` (one row per subtype) -> PNG; None when no image loaded."""
    if not any(t for _, t in rows):
        return None
    fig, axes = plt.subplots(len(rows), per_subtype, figsize=(1.3 * per_subtype, 1.45 * len(rows)), dpi=110,
                             squeeze=False)
    for r, (g, tiles) in enumerate(rows):
        for c in range(per_subtype):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(tiles):
                ax.imshow(tiles[c], cmap="gray", vmin=0, vmax=255)
            if c == 0:
                ax.set_title(f"{g}", fontsize=8, loc="left")
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, figure)


def montage(paths: pd.Series, subtype: pd.Series, *, per_subtype: int, tile: int, seed: int,
            figure: Path, title: str = "Sample images per subtype") -> tuple[Path | None, list[dict[str, str]]]:
    """Grid of ``per_subtype`` random images per subtype (rows) -> PNG, plus the images that failed to load."""
    rows, errors = montage_tiles(paths, subtype, per_subtype=per_subtype, tile=tile, seed=seed)
    return plot_montage(rows, per_subtype=per_subtype, figure=figure, title=title), errors
