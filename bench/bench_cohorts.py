"""Benchmark: NIH manifest + balanced 1000/1000 sample for four labels from the real 112k-row table.

Run: ``.venv/bin/python bench/bench_cohorts.py [--data ../shared/data] [--repeats 3]``.
Times ``cohorts`` (adapter + sampler, what ``python -m cohorts.run`` does minus file writes)
against a plain reference written the usual way (row-wise ``apply`` label parsing, pandas
``groupby().sample`` per label), measured in the same run; prints the best of ``--repeats``.
"""
from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from cohorts.adapters.nih import load_nih
from cohorts.config import NihSource
from cohorts.sampling import balanced_sample

LABELS = ["Atelectasis", "Edema", "Effusion", "Opacity"]


def ours(table: Path, google: Path) -> pd.DataFrame:
    result = load_nih(NihSource(kind="nih", table=table, google_labels=google))
    return balanced_sample(result.manifest, labels=LABELS, n_per_class=1000, seed=0).sample


def reference(table: Path, google: Path) -> pd.DataFrame:
    df = pd.read_csv(table)
    for name in LABELS[:3]:
        df[name] = df["Finding Labels"].apply(lambda s, n=name: int(n in s.split("|")))
    g = pd.read_csv(google).set_index("Image Index")["Airspace opacity"]
    df["Opacity"] = df["Image Index"].map(g).map({"YES": 1, "NO": 0})
    parts = []
    for name in LABELS:
        for y in (1, 0):
            rows = df[df[name] == y].groupby("Patient ID").sample(1, random_state=0)
            parts.append(rows.sample(min(1000, len(rows)), random_state=0).assign(label=name, y=y))
    return pd.concat(parts)


def best_of(fn: Callable[..., pd.DataFrame], repeats: int, *args: Path) -> tuple[float, pd.DataFrame]:
    """Best wall time (s) of ``repeats`` calls and the last result."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("cohorts").setLevel(logging.ERROR)   # the known NIH Opacity shortfall warning
    table = args.data / "label-tables" / "Data_Entry_2017_v2020.csv.gz"
    google = args.data / "label-tables" / "google2019_nih-chest-xray-labels.csv.gz"
    t_ours, sample = best_of(ours, args.repeats, table, google)
    t_ref, ref = best_of(reference, args.repeats, table, google)
    print(f"NIH 112,120 rows -> manifest + 1000/1000 sample x {len(LABELS)} labels "
          f"({len(sample)} sampled rows; reference {len(ref)}):")
    print(f"  cohorts   : {t_ours:6.2f} s (best of {args.repeats})")
    print(f"  reference : {t_ref:6.2f} s (row-wise apply + groupby.sample)")
    print(f"  ratio reference/cohorts: {t_ref / t_ours:.2f}x")


if __name__ == "__main__":
    main()
