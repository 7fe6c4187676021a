"""User-facing survival head (lifelines / scvi-tools style): ``SurvivalModel(cfg).fit(inputs, target)``, then
``predict_risk`` / ``predict_survival`` for any patients of the same inputs.

The network lives in :mod:`fusion.survival.network` (:class:`~fusion.survival.network.SurvivalHead`) and its
training objectives in :mod:`fusion.survival.objective`; this class owns what is fitted on one training set:

1. the preprocessing (:class:`fusion.survival.inputs.Preprocessor`: clinical encoder, CXR token and latent
   standardization), and in joint mode (``tokens.latent: joint``) the fusion VAE's (:class:`fusion.model.FusionVAE`);
2. ``head.ensemble`` members, each early-stopped on its own validation part of the training patients
   (:func:`_validation_rows`, stratified by outcome, seeded by ``(*seed, member)``) and, with a linear term,
   started from its exact ridge fit (:mod:`fusion.survival.linear`); joint mode trains each member's VAE with it;
3. what prediction needs: each member's output offset (Cox: its mean over the training patients, as the
   partial likelihood leaves the offset free), the discrete-time bins, the Breslow baseline hazard.

Predictions are the members' mean (offset-removed) output. Fitted attributes end in ``_``.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import jax
import numpy as np

from fusion.clinical import EncodedVariable
from fusion.config import FusionConfig
from fusion.data import PatientData
from fusion.model import FusionVAE, informed_rows
from fusion.survival.config import SurvivalConfig
from fusion.survival.cox import bin_index, discrete_hazard_risk, time_bins
from fusion.survival.inputs import HeadInputs, Preprocessor, Target
from fusion.survival.linear import fit_linear_term, pad_rows
from fusion.survival.metrics import breslow_cumulative_hazard, cox_survival
from fusion.survival.network import SurvivalHead
from fusion.survival.objective import VAE_PREFIX, HeadLoss, JointLoss
from fusion.train import fit, iterate_batches

PREDICT_BATCH = 256


def head_network(cfg: SurvivalConfig, variables: Sequence[EncodedVariable], *, n_out: int = 1) -> SurvivalHead:
    """The token network of ``cfg.head`` over the encoded clinical ``variables`` and the enabled token groups."""
    h = cfg.head
    return SurvivalHead(variable_of_column=tuple(i for i, v in enumerate(variables) for _ in range(v.stop - v.start)),
                        n_variables=len(variables), n_out=n_out, d_model=h.d_model, n_layers=h.n_layers,
                        d_state=h.d_state, expand=h.expand, d_conv=h.d_conv, scan=h.scan,
                        use_clinical=cfg.tokens.clinical and bool(variables), use_latent=cfg.tokens.latent != "none",
                        use_cxr=cfg.tokens.cxr, mixer=h.mixer, linear_skip=h.linear_skip)


class SurvivalModel:
    """Survival head of one training set: preprocessing + ``head.ensemble`` trained token networks.

    ``cfg``: tokens, head, loss, train, ``evaluation.val_fraction``, ``joint.weight`` and ``seed`` are used.
    ``network``: the token network to train (default: :func:`head_network` of ``cfg`` and the fitted clinical
    encoder); an ablation passes a variant of a fitted model's ``network_``. ``seed``: entropy of the members'
    initialisation and validation splits (member ``m`` uses ``[*seed, m]``; default ``cfg.seed``).
    ``fusion``: joint mode's VAE config (default :class:`fusion.config.FusionConfig`).

    Fitted attributes: ``kind_`` (cox | discrete | binary), ``preprocessor_``, ``cuts_`` (discrete-time bin edges),
    ``network_``, ``vae_`` (joint mode), ``params_`` and ``offsets_`` (one per member), ``epochs_`` and
    ``best_epochs_`` (per member), ``baseline_cumulative_hazard_`` (Cox: ``(times, H0)`` from the training
    patients, None when a training risk is not finite).
    """

    def __init__(self, cfg: SurvivalConfig, *, network: SurvivalHead | None = None,
                 seed: int | Sequence[int] | None = None, fusion: FusionConfig | None = None) -> None:
        self.cfg = cfg
        self.network = network
        self.seed = (cfg.seed,) if seed is None else (seed,) if isinstance(seed, int) else tuple(seed)
        self.fusion = fusion

    # ---------------------------------------------------------------- training
    def fit(self, inputs: HeadInputs, target: Target) -> SurvivalModel:
        """Fit on the patients of ``target`` (rows of ``inputs`` with their outcomes); -> ``self``."""
        cfg = self.cfg
        self.kind_ = "binary" if target.endpoint.kind == "binary" else cfg.loss.kind
        self.preprocessor_ = Preprocessor.fit(inputs, target.rows, cfg)
        self.cuts_ = (time_bins(target.time, target.event, n_bins=cfg.loss.n_bins) if self.kind_ == "discrete"
                      else None)
        self.vae_, self._vae_train = self._prepare_vae(inputs, target.rows)
        self.network_ = self._network()
        train = self._arrays(inputs, target.rows, targets=self._targets(target))
        self.params_, self.offsets_, self.epochs_, self.best_epochs_ = [], [], [], []
        outputs = []
        for m in range(cfg.head.ensemble):
            params, result = self._fit_member(train, target.events, member=m)
            out = _predict(self._apply(), params, train)
            offset = out.mean(0) if self.kind_ == "cox" else 0.0   # the partial likelihood leaves the offset free
            outputs.append(out - offset)
            self.params_.append(params)
            self.offsets_.append(offset)
            self.epochs_.append(result.epochs_run)
            self.best_epochs_.append(result.best_epoch)
        self.baseline_cumulative_hazard_ = None
        if self.kind_ == "cox":
            train_risk = np.mean(outputs, axis=0)[:, 0]
            if np.isfinite(train_risk).all():
                self.baseline_cumulative_hazard_ = breslow_cumulative_hazard(target.time, target.event, train_risk)
        return self

    def _prepare_vae(self, inputs: HeadInputs, rows: np.ndarray) -> tuple[FusionVAE | None, PatientData | None]:
        """Joint mode: the fusion VAE with preprocessing fitted on the training patients ``rows``."""
        if self.cfg.tokens.latent != "joint":
            return None, None
        if inputs.vae_data is None:
            raise ValueError("tokens.latent is 'joint' but the inputs carry no VAE data (fusion.survival.inputs.head_inputs)")
        vae, train = FusionVAE(self.fusion or FusionConfig()), inputs.vae_data.subset(rows)
        vae.prepare(train, seed=self.cfg.seed)
        return vae, train

    def _network(self) -> SurvivalHead:
        n_out = len(self.cuts_) + 1 if self.kind_ == "discrete" else 1
        if self.network is None:
            return head_network(self.cfg, self.preprocessor_.encoder.variables, n_out=n_out)
        if self.network.n_out != n_out:
            raise ValueError(f"network has n_out={self.network.n_out}, the {self.kind_} loss needs {n_out}")
        return self.network

    def _targets(self, target: Target) -> dict[str, np.ndarray]:
        """Outcome arrays of the loss (``y``; or ``time``, ``event`` and the discrete ``bins``)."""
        if self.kind_ == "binary":
            return {"y": target.y.astype(np.float32)}
        out = {"time": target.time.astype(np.float32), "event": target.event.astype(np.float32)}
        if self.kind_ == "discrete":
            out["bins"] = bin_index(target.time, self.cuts_)
        return out

    def _losses(self) -> tuple[Any, Any]:
        """``(training loss, early-stopping score)`` of the network (joint mode: with the VAE)."""
        h, ties = self.cfg.head, self.cfg.loss.ties
        loss, score = HeadLoss(self.network_, self.kind_, ties, h.token_dropout), HeadLoss(self.network_, self.kind_, ties)
        if self.vae_ is not None:
            vae_json = self.vae_.cfg.model_dump_json(include={"model", "kl"})
            weight = self.cfg.joint.weight
            loss = JointLoss(loss, self.vae_.module, vae_json, weight)
            score = JointLoss(score, self.vae_.module, vae_json, weight, score=True)
        return loss, score

    def _apply(self) -> Any:
        """Jitted ``(params, batch) -> outputs (B, n_out)``."""
        return _jitted_joint(self._losses()[1]) if self.vae_ is not None else _jitted(self.network_)[1]

    def _fit_member(self, train: dict[str, np.ndarray], events: np.ndarray, *, member: int) -> tuple[Any, Any]:
        """Train member ``member`` on ``train`` (its own validation part) -> ``(best params, fusion.train.FitResult)``."""
        cfg = self.cfg
        loss, score = self._losses()
        entropy = [*self.seed, member]
        seed = int(np.random.SeedSequence(entropy).generate_state(1)[0] >> 1)
        val = _validation_rows(len(events), np.arange(len(events)), events, fraction=cfg.evaluation.val_fraction,
                               rng=np.random.default_rng(entropy))
        train_arr, val_arr = _take(train, ~val), _take(train, val)
        head_in = {k: v[:2] for k, v in train_arr.items() if not k.startswith(VAE_PREFIX)}
        params = _jitted(self.network_)[0](jax.random.PRNGKey(seed), head_in)["params"]
        if self.vae_ is not None:
            self.vae_.prepare(self._vae_train, seed=seed)          # same preprocessing, this member's initialisation
            params = {"head": params, "vae": self.vae_.params}
        elif "linear" in params:                                   # start from the exact ridge fit of the linear term
            params = {**params, "linear": fit_linear_term(self.network_, HeadLoss, self.kind_, cfg.loss.ties, train_arr,
                                                          penalty=cfg.head.linear_penalty)}
        result = fit(loss, params, train_arr, val_arr, cfg=cfg.train_config(), seed=seed, eval_fn=score, progress=False)
        best = result.params
        if self.vae_ is None and "linear" in params and _score(score, params, val_arr) <= _score(score, best, val_arr):
            best = params                                          # training never beat the start on validation
        return best, result

    # ---------------------------------------------------------------- inference
    def _arrays(self, inputs: HeadInputs, rows: np.ndarray, *, targets: dict[str, np.ndarray] | None = None
                ) -> dict[str, np.ndarray]:
        """Batch arrays of ``rows`` (+ ``targets``; joint mode: + the VAE's arrays, latent from the forward pass)."""
        arrays = self.preprocessor_.arrays(inputs, rows) | (targets or {})
        if self.vae_ is not None:
            vae_arr = self.vae_.arrays(inputs.vae_data.subset(rows))
            informed = informed_rows(vae_arr)                       # else the latent is the prior: absent
            arrays |= {f"{VAE_PREFIX}{k}": v for k, v in vae_arr.items()}
            arrays |= {"latent": np.zeros((len(informed), self.vae_.cfg.model.latent_dim), np.float32),
                       "latent_mask": informed.astype(np.float32)}
        return arrays

    def predict(self, inputs: HeadInputs, rows: np.ndarray) -> np.ndarray:
        """Members' mean output ``(n, n_out)`` float64 for ``rows`` of ``inputs`` (Cox: offset-removed risk)."""
        arrays, apply = self._arrays(inputs, rows), self._apply()
        return np.mean([_predict(apply, p, arrays) - offset for p, offset in zip(self.params_, self.offsets_)], axis=0)

    def predict_risk(self, inputs: HeadInputs, rows: np.ndarray) -> np.ndarray:
        """Risk score ``(n,)`` (higher = worse): the Cox linear predictor, the logit, or the discrete-time
        cumulative hazard."""
        out = self.predict(inputs, rows)
        return np.asarray(discrete_hazard_risk(out)) if self.kind_ == "discrete" else out[:, 0]

    def predict_survival(self, inputs: HeadInputs, rows: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Survival ``S(t)`` at ``times`` ``(n, len(times))`` (Cox: Breslow baseline of the training patients, NaN
        where a risk is not finite). Not defined for binary endpoints."""
        if self.kind_ == "binary":
            raise ValueError("a binary endpoint has no survival curve")
        out = self.predict(inputs, rows)
        if self.kind_ == "discrete":
            hazards = 1.0 / (1.0 + np.exp(-out))
            return np.cumprod(1.0 - hazards, axis=1)[:, bin_index(times, self.cuts_)]
        risk = out[:, 0]
        if self.baseline_cumulative_hazard_ is None or not np.isfinite(risk).all():
            return np.full((len(risk), len(times)), np.nan)
        return cox_survival(risk, *self.baseline_cumulative_hazard_, times)


def _validation_rows(n: int, rest: np.ndarray, events: np.ndarray, *, fraction: float,
                     rng: np.random.Generator) -> np.ndarray:
    """Early-stopping mask (N,) drawn from the training rows ``rest``, stratified by ``events`` (0/1): with at
    least two events in ``rest`` the validation part holds one or more (an event-free Cox validation loss is
    identically 0, so early stopping would always keep the first epoch)."""
    val = np.zeros(n, bool)
    for cls in (1, 0):
        pool = rest[events[rest] == cls]
        k = round(fraction * len(pool))
        if cls == 1 and len(pool) >= 2:
            k = max(k, 1)
        val[rng.choice(pool, k, replace=False)] = True
    if not val.any():
        val[rng.choice(rest, 1)] = True
    return val


def _take(arrays: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[mask] for k, v in arrays.items()}


@lru_cache(maxsize=8)
def _jitted(module: SurvivalHead) -> tuple[Any, Any]:
    """``(init, apply)`` of ``module``, jitted once per distinct head (shared across folds)."""
    return jax.jit(module.init), jax.jit(lambda p, b: module.apply({"params": p}, b))


@lru_cache(maxsize=8)
def _jitted_joint(loss: JointLoss) -> Any:
    return jax.jit(loss.outputs)


def _score(loss: HeadLoss, params: Any, arrays: dict[str, np.ndarray]) -> float:
    """``loss`` of ``params`` on all of ``arrays`` in one batch (zero-weight padding rows are ignored)."""
    return float(_jitted_loss(loss)(params, pad_rows(arrays), jax.random.PRNGKey(0), 0)[0])


@lru_cache(maxsize=16)
def _jitted_loss(loss: HeadLoss) -> Any:
    return jax.jit(loss)


def _predict(apply: Any, params: Any, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Outputs of the jitted ``apply(params, batch)`` over ``arrays`` (rows in order)."""
    n = len(next(iter(arrays.values())))
    outs = []
    for batch in iterate_batches(arrays, batch_size=PREDICT_BATCH, order=np.arange(n)):   # one shape for every fold
        outs.append(np.asarray(apply(params, batch))[batch["weight"] > 0])
    return np.concatenate(outs).astype(np.float64)
