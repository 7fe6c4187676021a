"""The VAE and the survival head train on 4 (virtual CPU) devices as on 1.

Each run is its own process: ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` must be set
before JAX starts. Batches are sharded over the devices and the parameters replicated, so the only
difference from one device is the order of the cross-device sums: parameters agree to float32
rounding (tolerance below), histories too. The training rows (84) leave an uneven last batch
(32 + 32 + 20). A checkpoint saved on 4 devices is resumed on 1 and finishes as a 1-device run.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow   # minutes: `make test-fast` leaves it out

REPO = Path(__file__).resolve().parents[2]
RTOL, ATOL = 2e-4, 2e-5     # float32 sums over 84 rows and 4 epochs, in another order

PROBE = r"""
import importlib.util, json, sys
from pathlib import Path
import jax, numpy as np
import jax.numpy as jnp

mode, root, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod
result = {}
if mode.startswith("vae"):
    conf = load(Path("tests/fusion/conftest.py"), "fusion_conftest")
    from fusion.data import load_patient_data, split_patients
    from fusion.model import FusionVAE
    cohort, store = root / "cohort", root / "store.zarr"
    if not cohort.exists():
        conf.write_contract_cohort(root)
    data = load_patient_data(cohort, store, model=conf.MODEL)
    split = split_patients(data.patient_ids, val_fraction=0.15, test_fraction=0.15, seed=0)
    if mode.startswith("vae-host"):             # one of two processes of a multi-host run
        from fusion.distributed import DistributedConfig, initialize, is_primary
        pid = int(mode[-1])
        initialize(DistributedConfig(enabled=True, coordinator_address=sys.argv[4], num_processes=2, process_id=pid))
        result["primary"] = is_primary()
    vae = FusionVAE(conf._tiny_config())
    stop = 2 if mode == "vae-half" else None
    ckpt = {"vae": None, "vae-half": root / "ckpt", "vae-resume": root / "ckpt"}.get(mode, out / "ckpt")
    res = vae.fit(data, train_idx=split["train"], val_idx=split["val"], progress=False,
                  checkpoint_dir=ckpt, stop_after_epochs=stop)
    leaves = [np.asarray(x, np.float64).ravel() for x in jax.tree_util.tree_leaves(vae.params)]
    np.save(out / "params.npy", np.concatenate(leaves))
    result.update(n_train=len(split["train"]), epochs=res.epochs_run, history=res.history)
else:
    conf = load(Path("tests/survival/conftest.py"), "survival_conftest")
    from fusion.survival.run import run_survival
    from fusion.survival.config import SurvivalConfig
    cohort, store = conf.write_toy_cohort(root)
    # one head per fold and no linear start: no discrete choice that float rounding across devices could flip
    cfg = SurvivalConfig.model_validate({"tokens": {"cxr_model": "toy", "latent": "none"},
                                         "head": {"ensemble": 1, "linear_skip": False}})
    paths = run_survival(cfg, cohort=cohort, store=store, selection=None, latents=None, out=out / "surv")
    import pandas as pd
    risk = pd.read_parquet(paths["risk"])
    np.save(out / "risk.npy", risk.select_dtypes("number").to_numpy(np.float64))
result["devices"] = jax.device_count()
print(json.dumps(result))
"""


def _start(mode: str, devices: int, root: Path, out: Path, *extra: str) -> subprocess.Popen:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen([sys.executable, "-c", PROBE, mode, str(root), str(out), *extra], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen) -> dict:
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def _run(mode: str, devices: int, root: Path, out: Path) -> dict:
    info = _result(_start(mode, devices, root, out))
    assert info["devices"] == devices
    return info


def _close_history(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys() and x["step"] == y["step"]
        np.testing.assert_allclose([x[k] for k in sorted(x)], [y[k] for k in sorted(y)], rtol=RTOL, atol=ATOL)


def test_vae_on_4_devices_equals_1_device_and_resumes_on_1(tmp_path) -> None:
    one = _run("vae", 1, tmp_path / "one", tmp_path / "one_out")
    four = _run("vae", 4, tmp_path / "one", tmp_path / "four_out")     # same cohort files
    assert one["n_train"] % 32 != 0                                      # an uneven last batch
    _close_history(one["history"], four["history"])
    p1, p4 = np.load(tmp_path / "one_out" / "params.npy"), np.load(tmp_path / "four_out" / "params.npy")
    np.testing.assert_allclose(p4, p1, rtol=RTOL, atol=ATOL)

    half = _run("vae-half", 4, tmp_path / "one", tmp_path / "half_out")   # 2 epochs on 4 devices, checkpointed
    assert half["epochs"] == 2
    resumed = _run("vae-resume", 1, tmp_path / "one", tmp_path / "resumed_out")
    assert resumed["epochs"] == one["epochs"]
    _close_history(one["history"], resumed["history"])
    np.testing.assert_allclose(np.load(tmp_path / "resumed_out" / "params.npy"), p1, rtol=RTOL, atol=ATOL)


def test_survival_head_on_4_devices_equals_1_device(tmp_path) -> None:
    _run("survival", 1, tmp_path / "s1", tmp_path / "s1_out")
    _run("survival", 4, tmp_path / "s4", tmp_path / "s4_out")
    r1, r4 = np.load(tmp_path / "s1_out" / "risk.npy"), np.load(tmp_path / "s4_out" / "risk.npy")
    assert r1.shape == r4.shape and len(r1) > 0
    np.testing.assert_allclose(r4, r1, rtol=1e-3, atol=1e-4)


def test_vae_on_two_processes_equals_one_process(tmp_path) -> None:
    """Two processes on localhost (gloo collectives), one CPU device each: the 1-process parameters; only process 0 checkpoints."""
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        address = f"localhost:{sock.getsockname()[1]}"
    one = _run("vae", 1, tmp_path / "data", tmp_path / "one_out")
    procs = [_start(f"vae-host{i}", 1, tmp_path / "data", tmp_path / f"host{i}_out", address) for i in (0, 1)]
    hosts = [_result(p) for p in procs]
    assert [h["devices"] for h in hosts] == [2, 2] and [h["primary"] for h in hosts] == [True, False]
    p1 = np.load(tmp_path / "one_out" / "params.npy")
    for i, h in enumerate(hosts):
        _close_history(one["history"], h["history"])
        np.testing.assert_allclose(np.load(tmp_path / f"host{i}_out" / "params.npy"), p1, rtol=RTOL, atol=ATOL)
    assert (tmp_path / "host0_out" / "ckpt" / "meta.json").is_file()
    assert not (tmp_path / "host1_out" / "ckpt").exists()
