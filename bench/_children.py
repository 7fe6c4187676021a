"""Shared by the clustering bench scripts: their common command-line options, and running one benchmark child
process, timed, with the load around it recorded."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path


def base_parser(doc: str) -> argparse.ArgumentParser:
    """Parser with the options both clustering benchmarks take: ``--n``, ``--work``, ``--no-scanpy``."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_clustering"))
    ap.add_argument("--no-scanpy", dest="scanpy", action="store_false")
    return ap


def run_child(which: str, cmd: list[str], env: dict[str, str]) -> dict:
    """Run ``cmd``; return the JSON object its last stdout line holds, plus ``process_s`` (wall seconds of the
    process) and ``load_before`` / ``load_after`` (``os.getloadavg()``). Raises ``RuntimeError`` with the tail
    of stderr when the child fails."""
    load = os.getloadavg()
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{which} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["process_s"] = time.perf_counter() - t
    res["load_before"], res["load_after"] = load, os.getloadavg()
    return res
