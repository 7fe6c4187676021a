"""``python -m pipeline.run --config configs/demo.yaml --out runs/demo``: images -> exported subtypes.

Runs cohorts -> embedders -> benchmarks (model selection) -> fusion (VAE + survival head) ->
clustering (subtypes + export) into one run folder, skipping stages whose config, inputs and code
are unchanged (see :mod:`pipeline.cache`), then writes ``report.html``. ``stages.json`` records which
stages ran and which were reused. A killed run resumes: finished stages are reused, and the
interrupted stage resumes its partial outputs (the embedder's finished row chunks, the VAE checkpoint)
unless an earlier stage reran or the stage is forced; then it starts afresh. The embedding store is the exception:
it records the manifest's sha256 and each model's identity, so after a cohort rerun it is resumed when they match
and rebuilt where they do not.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path

from pydantic import BaseModel

from core import cli
from core.config import ConfigError
from core.logs import deduplicate
from core.provenance import write_run_record
from core.safeio import os_error_line, run_lock, write_json

from . import cache
from .config import load_pipeline_config
from .report import write_report
from .stages import STAGES

log = logging.getLogger("pipeline")
STAGES_FILE = "stages.json"     # {stage: {"status": "ran" | "cached", "seconds": ...}} of the latest run
REPO = Path(__file__).resolve().parents[1]


def run_pipeline(config: str | Path, *, out: str | Path, force: tuple[str, ...] = (),
                 until: str | None = None) -> Path:
    """Run every configured stage into ``out``; returns the path of the run report.

    ``force`` names stages to rerun even when cached; ``until`` stops after the named stage. One run per
    folder: a second run into ``out`` while this one lives raises :class:`core.safeio.RunLockedError`;
    an unusable ``out`` raises :class:`core.safeio.OutputPathError`, both before any work.
    """
    name, sections = load_pipeline_config(config)
    unknown = set(force) - {s.name for s in STAGES} - {"all"}
    if unknown or (until and until not in sections):
        raise ConfigError(f"unknown or unconfigured stage in --force/--until: {sorted(unknown) or until}")
    run_dir = Path(out).resolve()
    with run_lock(run_dir):
        return _run_stages(run_dir, name, sections, force=force, until=until)


def _run_stages(run_dir: Path, name: str, sections: dict[str, BaseModel], *, force: tuple[str, ...],
                until: str | None) -> Path:
    _log_to_file(run_dir / "pipeline.log")
    write_run_record(run_dir, _Sections(sections=sections), stage="pipeline", extra={"name": name})
    upstream: list[str] = []
    timings: dict[str, dict[str, object]] = {}
    for stage in STAGES:
        if stage.name not in sections:
            continue
        cfg = sections[stage.name]
        key = cache.stage_key(cfg.model_dump(mode="json"), upstream=upstream,
                              code=cache.package_source_hash(stage.package, root=REPO))
        upstream.append(key)
        out_dir = stage.out_dir(run_dir)
        if cache.is_done(out_dir, key) and not ({stage.name, "all"} & set(force)):
            log.info("stage %-10s up to date (key %s), skipped", stage.name, key[:12])
            timings[stage.name] = {"status": "cached"}
        else:
            forced = bool({stage.name, "all"} & set(force))
            rebuilt = any(t["status"] == "ran" for t in timings.values())
            if out_dir.exists() and (forced or (rebuilt and not stage.checks_own_inputs)):
                # partial outputs (a checkpoint, derived tables) may only be resumed when the inputs they came
                # from are the ones of this run: an earlier stage that reran may have rewritten its files under
                # the same names. A stage whose outputs check their own inputs (the store) resumes them.
                log.info("stage %-10s starts afresh (%s)", stage.name, "forced" if forced else "inputs rebuilt")
                shutil.rmtree(out_dir)
            elif out_dir.exists() and rebuilt:
                log.info("stage %-10s resumes its outputs, which check the rebuilt inputs themselves", stage.name)
            log.info("stage %-10s running -> %s", stage.name, out_dir)
            start = time.perf_counter()
            inputs = stage.inputs(run_dir, set(sections))
            outputs = stage.entry_point()(cfg, **inputs, out=out_dir)
            seconds = time.perf_counter() - start
            cache.mark_done(out_dir, key, outputs=outputs or {}, seconds=seconds)
            log.info("stage %-10s done in %.1f s", stage.name, seconds)
            timings[stage.name] = {"status": "ran", "seconds": round(seconds, 1)}
        write_json(run_dir / STAGES_FILE, timings)
        if stage.name == until:
            break
    return write_report(run_dir, title=name, timings=timings)


class _Sections(BaseModel):
    sections: dict[str, BaseModel]

    def model_dump(self, **kwargs):  # type: ignore[override]
        return {k: v.model_dump(**kwargs) for k, v in self.sections.items()}


def _log_to_file(path: Path) -> None:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(cli.LOG_FORMAT))
    logging.getLogger().addHandler(deduplicate(handler))


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    parser = cli.parser("python -m pipeline.run", __doc__)
    parser.add_argument("--config", required=True, help="pipeline YAML (e.g. configs/demo.yaml)")
    parser.add_argument("--out", required=True, help="run folder (created; reused for caching)")
    parser.add_argument("--force", nargs="*", default=(), metavar="STAGE",
                        help="rerun these stages even when cached ('all' for every stage)")
    parser.add_argument("--until", default=None, metavar="STAGE", help="stop after this stage")
    return cli.run(parser, _main, argv)


def _main(args: argparse.Namespace) -> int:
    try:
        report = run_pipeline(args.config, out=args.out, force=tuple(args.force), until=args.until)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):   # a missing input: core.cli's one line
            raise
        print(f"error: {os_error_line(exc)}", file=sys.stderr)   # an output that cannot be written
        return 2
    print(f"\nrun finished: {Path(args.out).resolve()}\nreport: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
