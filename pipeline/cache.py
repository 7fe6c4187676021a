"""Content-hash keys that let the pipeline skip stages whose inputs, config and code are unchanged.

A stage's key hashes (1) its resolved config section, (2) the keys of the stages before it (their
outputs are a deterministic function of those keys), (3) the source of the stage's package, and
(4) a fingerprint (path, size, mtime) of every existing file or folder that the config names, so
that editing a raw table or adding images reruns the cohort stage. A stage is done when its
``.stage.json`` holds the current key; it is written only after the stage succeeded, so a killed
stage reruns (and the embedder resumes its finished rows).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.provenance import now_iso, sha256_json
from core.safeio import relative_path, write_json

MARKER = ".stage.json"
_MAX_FINGERPRINT_FILES = 200_000


def package_source_hash(package: str, *, root: Path) -> str:
    """sha256 over the ``.py`` files of ``package`` (path + bytes), in sorted order."""
    h = hashlib.sha256()
    for path in sorted((root / package).rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _config_paths(obj: Any) -> Iterator[Path]:
    """Every string in a config tree that names an existing file or folder."""
    if isinstance(obj, dict):
        for value in obj.values():
            yield from _config_paths(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _config_paths(value)
    elif isinstance(obj, str) and ("/" in obj or obj.endswith((".csv", ".parquet", ".gz"))):
        path = Path(obj).expanduser()
        if path.exists():
            yield path


def inputs_fingerprint(section: dict[str, Any]) -> str:
    """sha256 of (path, size, mtime) for every file under the paths the config section names."""
    entries: list[tuple[str, int, int]] = []
    for root in sorted(set(_config_paths(section))):
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files[:_MAX_FINGERPRINT_FILES]:
            st = path.stat()
            entries.append((str(path.resolve()), st.st_size, st.st_mtime_ns))
    return sha256_json(entries)


def stage_key(section: dict[str, Any], *, upstream: list[str], code: str) -> str:
    """The cache key of one stage."""
    return sha256_json({"config": section, "upstream": upstream, "code": code,
                        "inputs": inputs_fingerprint(section)})


def is_done(out_dir: Path, key: str) -> bool:
    """True when ``out_dir`` holds a finished run of the stage with this key."""
    marker = out_dir / MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("key") == key
    except json.JSONDecodeError:
        return False


def mark_done(out_dir: Path, key: str, *, outputs: dict[str, Path], seconds: float) -> None:
    """Record that the stage finished with ``key`` (written last, atomically; output paths relative to the run folder)."""
    write_json(out_dir / MARKER, {"key": key, "finished": now_iso(), "seconds": round(seconds, 2),
                                  "outputs": {k: relative_path(v, root=out_dir.parent)
                                              for k, v in (outputs or {}).items()}})
