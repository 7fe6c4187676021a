"""Benchmark: one training step of the fusion VAE in JAX/Flax vs an equivalent PyTorch model, same run.

Both sides: the same network (attention pooling over CXR tokens, clinical MLP encoder, product of
experts with the prior, per-type decoders, joint + two single-modality ELBO terms), the same sizes,
batch 256, AdamW with global-norm clipping, float32 on CPU with the default thread count. Reports
median step time, steps/s, the JAX/PyTorch ratio, and the wall time of one epoch over 100k synthetic
patients through the real training loop (:func:`fusion.train.fit`, host batching included).

    .venv/bin/python bench/bench_fusion.py [--patients 100000] [--steps 30]
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import jax
import numpy as np
import torch
from flax.training.train_state import TrainState
from torch import nn

from fusion.clinical import ClinicalLayout
from fusion.config import FusionConfig
from fusion.model import make_loss_fn
from fusion.module import FusionModule
from fusion.train import fit, make_optimizer
from fusion.train_config import TrainConfig

B, TOKENS, D, HIDDEN, LATENT, LAYERS, HEADS = 256, 4, 512, 128, 16, 2, 4
LAYOUT = ClinicalLayout(n_continuous=20, n_binary=8, categorical_sizes=(3, 4))


def synthetic_arrays(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Batch arrays of ``n`` synthetic patients in the layout of :func:`fusion.model.make_arrays`."""
    rng = np.random.default_rng(seed)
    c = LAYOUT.width
    tokens = rng.random((n, TOKENS)) < 0.8
    values = rng.normal(size=(n, c)).astype(np.float32)
    values[:, 20:28] = rng.random((n, 8)) < 0.5
    values[:, 28:31] = np.eye(3)[rng.integers(0, 3, n)]
    values[:, 31:35] = np.eye(4)[rng.integers(0, 4, n)]
    mask = rng.random((n, c)) < 0.5
    mask[:, 28:31] = mask[:, [28]]
    mask[:, 31:35] = mask[:, [31]]
    cxr = rng.normal(size=(n, TOKENS, D)).astype(np.float32)
    return {"cxr": cxr, "cxr_tokens": tokens, "cxr_target": cxr.mean(1), "cxr_present": tokens.any(1).astype(np.float32),
            "clin_values": values, "clin_mask": mask.astype(np.float32), "clin_present": mask.any(1).astype(np.float32)}


# ----------------------------------------------------------------------------- PyTorch reference
class TorchMLP(nn.Module):
    def __init__(self, d_in: int, features: list[int]) -> None:
        super().__init__()
        dims = [d_in] + features
        self.dense = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.norms = nn.ModuleList(nn.LayerNorm(f) for f in features[:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.dense):
            x = layer(x)
            if i < len(self.norms):
                x = nn.functional.gelu(self.norms[i](x))
        return x


class TorchFusion(nn.Module):
    """The same network as :class:`fusion.module.FusionModule` (attention pooling, unimodal ELBO terms)."""

    def __init__(self) -> None:
        super().__init__()
        body = [HIDDEN] * LAYERS
        self.proj = nn.Linear(D, HIDDEN)
        self.query = nn.Parameter(torch.randn(1, 1, HIDDEN) * 0.02)
        self.attn = nn.MultiheadAttention(HIDDEN, HEADS, batch_first=True)
        self.pool_norm = nn.LayerNorm(HIDDEN)
        self.cxr_body, self.clin_body = TorchMLP(HIDDEN, body), TorchMLP(2 * LAYOUT.width, body)
        self.cxr_head, self.clin_head = nn.Linear(HIDDEN, 2 * LATENT), nn.Linear(HIDDEN, 2 * LATENT)
        self.cxr_dec, self.clin_dec = TorchMLP(LATENT, body + [D]), TorchMLP(LATENT, body + [LAYOUT.width])
        self.cxr_logsigma = nn.Parameter(torch.zeros(D))
        self.clin_logsigma = nn.Parameter(torch.zeros(LAYOUT.n_continuous))

    def forward(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        h = self.proj(b["cxr"])
        pad = ~(b["cxr_tokens"] | ~b["cxr_tokens"].any(1, keepdim=True))
        pooled, _ = self.attn(self.query.expand(h.shape[0], -1, -1), h, h, key_padding_mask=pad, need_weights=False)
        cxr_mu, cxr_lv = self.cxr_head(nn.functional.gelu(self.cxr_body(self.pool_norm(pooled[:, 0])))).chunk(2, -1)
        on = b["clin_mask"] > 0
        x = torch.where(on, b["clin_values"], torch.zeros_like(b["clin_values"]))
        clin_mu, clin_lv = self.clin_head(nn.functional.gelu(self.clin_body(torch.cat([x, on.float()], -1)))).chunk(2, -1)
        experts = {"cxr": (cxr_mu, cxr_lv.clamp(-8, 8), b["cxr_present"]),
                   "clinical": (clin_mu, clin_lv.clamp(-8, 8), b["clin_present"])}
        loss = torch.zeros(())
        for subset in (("cxr", "clinical"), ("cxr",), ("clinical",)):
            prec, wsum = torch.ones_like(cxr_mu), torch.zeros_like(cxr_mu)
            for m in subset:
                mu, lv, p = experts[m]
                e = torch.where(p[:, None] > 0, torch.exp(-lv), torch.zeros_like(lv))
                prec, wsum = prec + e, wsum + mu * e
            mu, lv = wsum / prec, -torch.log(prec)
            z = mu + torch.exp(0.5 * lv) * torch.randn_like(mu)
            rec = self._cxr_nll(z, b) * b["cxr_present"] + self._clin_nll(z, b, x, on)
            kl = 0.5 * (lv.exp() + mu ** 2 - 1 - lv).sum(-1)
            has = torch.stack([experts[m][2] for m in subset]).amax(0)
            loss = loss + (b["weight"] * has * (rec + kl)).sum() / b["weight"].sum()
        return loss

    def _cxr_nll(self, z: torch.Tensor, b: dict[str, torch.Tensor]) -> torch.Tensor:
        return _gauss(b["cxr_target"], self.cxr_dec(z), self.cxr_logsigma).sum(-1)

    def _clin_nll(self, z: torch.Tensor, b: dict[str, torch.Tensor], x: torch.Tensor, on: torch.Tensor) -> torch.Tensor:
        out, nc, nb = self.clin_dec(z), LAYOUT.n_continuous, LAYOUT.n_binary
        parts = [_gauss(x[:, :nc], out[:, :nc], self.clin_logsigma),
                 nn.functional.softplus(out[:, nc:nc + nb]) - x[:, nc:nc + nb] * out[:, nc:nc + nb]]
        start = nc + nb
        for size in LAYOUT.categorical_sizes:
            parts.append(-x[:, start:start + size] * torch.log_softmax(out[:, start:start + size], -1))
            start += size
        per_col = torch.cat(parts, -1)
        return torch.where(on, per_col, torch.zeros_like(per_col)).sum(-1)


def _gauss(x: torch.Tensor, mean: torch.Tensor, logsigma: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((x - mean) * torch.exp(-logsigma)) ** 2 + logsigma + 0.5 * math.log(2 * math.pi)


# ----------------------------------------------------------------------------- timing
def build_module() -> FusionModule:
    """The JAX network at the benchmark sizes (attention pooling, Gaussian CXR likelihood)."""
    return FusionModule(layout=LAYOUT, cxr_dim=D, latent_dim=LATENT, hidden=HIDDEN, n_layers=LAYERS, heads=HEADS)


def time_steps(step, n_steps: int) -> list[float]:
    """Wall time of each of ``n_steps`` calls of ``step()`` (which must block until done)."""
    times = []
    for _ in range(n_steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def bench_jax(batch: dict[str, np.ndarray], cfg: FusionConfig, n_steps: int) -> tuple[float, list[float]]:
    module = build_module()
    loss_fn = make_loss_fn(module, cfg)
    params = module.init({"params": jax.random.PRNGKey(0)}, batch, jax.random.PRNGKey(1))["params"]
    state = TrainState.create(apply_fn=None, params=params, tx=make_optimizer(cfg.train, total_steps=10_000))
    key = jax.random.PRNGKey(0)

    @jax.jit
    def step(st: TrainState, b: dict, k: jax.Array) -> tuple[TrainState, jax.Array]:
        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(st.params, b, jax.random.fold_in(k, st.step), st.step)
        return st.apply_gradients(grads=grads), loss

    dev_batch = jax.device_put(batch)
    holder = {"state": state}

    def one() -> None:
        holder["state"], loss = step(holder["state"], dev_batch, key)
        loss.block_until_ready()

    t0 = time.perf_counter()
    one()
    compile_s = time.perf_counter() - t0
    return compile_s, time_steps(one, n_steps)


def bench_torch(batch: dict[str, np.ndarray], cfg: TrainConfig, n_steps: int) -> list[float]:
    torch.manual_seed(0)
    model = TorchFusion()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    tb = {k: torch.from_numpy(v) for k, v in batch.items()}

    def one() -> None:
        opt.zero_grad(set_to_none=True)
        loss = model(tb)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()

    one()   # warm-up
    return time_steps(one, n_steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    cfg = FusionConfig.model_validate({"model": {"hidden": HIDDEN, "latent_dim": LATENT, "n_layers": LAYERS,
                                                 "attention_heads": HEADS},
                                       "train": {"batch_size": B, "max_epochs": 1}})
    batch = synthetic_arrays(B) | {"weight": np.ones(B, np.float32)}
    default_threads = torch.get_num_threads()
    print(f"devices: {jax.devices()}  torch default threads: {default_threads}")
    print(f"sizes: batch {B}, CXR {TOKENS}x{D} tokens, clinical width {LAYOUT.width}, hidden {HIDDEN}, "
          f"latent {LATENT}, layers {LAYERS}")
    compile_s, jax_t = bench_jax(batch, cfg, args.steps)
    # the reference gets its best thread setting (OpenMP oversubscription can slow it on a busy machine)
    torch_by_threads = {}
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        torch_by_threads[threads] = statistics.median(bench_torch(batch, cfg.train, args.steps))
        print(f"torch step with {threads} thread(s): median {torch_by_threads[threads] * 1e3:.1f} ms")
    torch.set_num_threads(default_threads)
    jm, tm = statistics.median(jax_t), min(torch_by_threads.values())
    print(f"JAX   step: median {jm * 1e3:.1f} ms  ({1 / jm:.1f} steps/s), first call incl. compile {compile_s:.1f} s")
    print(f"torch step (best thread setting): median {tm * 1e3:.1f} ms  ({1 / tm:.1f} steps/s)")
    print(f"ratio JAX/torch step time: {jm / tm:.2f}  ({'JAX faster' if jm < tm else 'JAX SLOWER'})")

    arrays = synthetic_arrays(args.patients, seed=1)
    module = build_module()
    params = module.init({"params": jax.random.PRNGKey(0)}, batch, jax.random.PRNGKey(1))["params"]
    res = fit(make_loss_fn(module, cfg), params, arrays, None, cfg=cfg.train.model_copy(update={"max_epochs": 2}),
              seed=0, progress=True)
    steps = res.history[0]["step"]
    first, second = res.epoch_seconds
    print(f"epoch over {args.patients} patients ({steps} steps) via fusion.train.fit: {second:.1f} s "
          f"({steps / second:.1f} steps/s incl. host batching); first epoch incl. compile {first:.1f} s")

if __name__ == "__main__":
    main()
