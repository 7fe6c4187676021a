"""Stage cache keys: unchanged inputs skip, any change in config, upstream, code or raw files reruns."""
from __future__ import annotations

import os
from pathlib import Path

from pipeline import cache


def test_key_is_stable_and_sensitive(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "table.csv").write_text("a,b\n1,2\n")
    section = {"source": {"root": str(raw)}, "seed": 0}
    key = cache.stage_key(section, upstream=[], code="c1")
    assert key == cache.stage_key(dict(section), upstream=[], code="c1")
    assert key != cache.stage_key({**section, "seed": 1}, upstream=[], code="c1")
    assert key != cache.stage_key(section, upstream=["x"], code="c1")
    assert key != cache.stage_key(section, upstream=[], code="c2")
    (raw / "table.csv").write_text("a,b\n1,3\n")
    os.utime(raw / "table.csv", ns=(1, 1))
    assert key != cache.stage_key(section, upstream=[], code="c1")


def test_marker_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "stage"
    assert not cache.is_done(out, "k1")
    cache.mark_done(out, "k1", outputs={"x": out / "x"}, seconds=1.0)
    assert cache.is_done(out, "k1")
    assert not cache.is_done(out, "k2")
    (out / cache.MARKER).write_text("{truncated")
    assert not cache.is_done(out, "k1")


def test_package_source_hash_changes_with_code(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    h1 = cache.package_source_hash("pkg", root=tmp_path)
    (pkg / "a.py").write_text("x = 2\n")
    assert h1 != cache.package_source_hash("pkg", root=tmp_path)
