"""End to end: ``python -m fusion.run`` on a contract-format cohort writes the documented outputs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
import zarr

from benchmarks.selection import write_selection
from core.config import ConfigError
from fusion.config import load_fusion_config
from fusion.run import main, run_fusion


def test_cli_writes_checkpoint_latents_metrics_figures(contract_cohort, tiny_config, tmp_path, capsys) -> None:
    cohort, store = contract_cohort
    cfg = tiny_config(evaluation={"ablations": True})
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({"fusion": cfg.model_dump(mode="json")}))   # composed-config form
    selection = tmp_path / "selection.json"
    write_selection(selection, {"model": cfg.cxr.model, "augmentation": "original"})
    out = tmp_path / "out"
    main(["--config", str(config), "--cohort", str(cohort), "--store", str(store), "--selection", str(selection),
          "--out", str(out)])
    assert "probe true_subtype on joint" in capsys.readouterr().out

    root = zarr.open_group(str(out / "latents.zarr"), mode="r")
    ids, latent = np.asarray(root["ids"][:], dtype=object).astype(str), np.asarray(root["latent"][:])
    assert latent.shape == (len(ids), 4) and latent.dtype == np.float32 and np.isfinite(latent).all()
    assert dict(root.attrs) == {"level": "patient", "model": "synthetic", "latent_dim": 4}
    assert set(np.asarray(root["split"][:], dtype=object).astype(str)) == {"train", "val", "test"}

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["input_notes"]["patients_without_cxr"] > 0
    assert metrics["input_notes"]["patients_without_clinical_row"] > 0
    for split in ("train", "val", "test"):
        assert {"nll_cxr", "nll_clinical", "kl"} <= set(metrics["reconstruction"][split])
    assert len(metrics["history"]) == metrics["epochs_run"] == 4
    spaces = metrics["probes"]["true_subtype"]
    assert {"joint", "clinical_only_vae", "cxr_only_vae"} <= set(spaces)
    assert spaces["joint"]["logistic"]["n_test"] > 0 and spaces["joint"]["logistic"]["metric"] == "balanced_accuracy"
    for name in ("checkpoint/params.msgpack", "checkpoint/clinical_encoder.json", "checkpoint/train_state/meta.json",
                 "figures/loss_curves.png", "figures/probes.png", "config.resolved.yaml", "run.json"):
        assert (out / name).is_file(), name


def test_rerun_with_another_model_config_trains_afresh(contract_cohort, tiny_config, tmp_path) -> None:
    cohort, store = contract_cohort
    run_fusion(tiny_config(), cohort=cohort, store=store, out=tmp_path)
    changed = tiny_config(model={"latent_dim": 3})            # same seed, rows and training config
    run_fusion(changed, cohort=cohort, store=store, out=tmp_path)
    root = zarr.open_group(str(tmp_path / "latents.zarr"), mode="r")
    assert root["latent"].shape[1] == 3
    meta = json.loads((tmp_path / "checkpoint" / "train_state" / "meta.json").read_text())
    assert meta["fingerprint"]["run"]["config"]["model"]["latent_dim"] == 3 and meta["epoch"] == 4


def test_unknown_config_key_is_reported(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  latent_dims: 3\n")
    with pytest.raises(ConfigError, match="model.latent_dims"):
        load_fusion_config(bad)


@pytest.mark.parametrize("path", ["configs/fusion/demo.yaml", "configs/fusion/covid_cxr.yaml"])
def test_shipped_configs_validate(path) -> None:
    from pathlib import Path

    load_fusion_config(Path(__file__).resolve().parents[2] / path)
