"""Survival head of the fusion stage: tokens -> selective SSM -> Cox / discrete-time / logistic loss, with baselines.

Import from the modules; this file imports nothing, so :mod:`fusion.config` embeds
:class:`fusion.survival.config.SurvivalConfig` without loading JAX.

* :mod:`fusion.survival.config`: ``SurvivalConfig``, the ``survival:`` section of a fusion config.
* :mod:`fusion.survival.model`: ``SurvivalModel``, the user API (``fit``, ``predict_risk``, ``predict_survival``,
  fitted attributes ending in ``_``).
* :mod:`fusion.survival.network`: ``SurvivalHead``, the Flax token network (:mod:`fusion.survival.ssm`: its
  selective state-space encoder); :mod:`fusion.survival.objective`: its training losses (``HeadLoss``, the joint
  mode's ``JointLoss``) over :mod:`fusion.survival.cox` (Cox, discrete-time and logistic losses in JAX);
  :mod:`fusion.survival.linear`: the exact ridge start of its linear term.
* :mod:`fusion.survival.inputs`: endpoint rows, landmark CXR images, the latent, the fitted preprocessing.
* :mod:`fusion.survival.crossval`: K-fold out-of-fold risks of the head, its ablations and the baselines
  (:mod:`fusion.survival.baselines`) for one endpoint; :mod:`fusion.survival.metrics` and
  :mod:`fusion.survival.eval`: survival metrics with bootstrap CIs; :mod:`fusion.survival.figures`.
* :mod:`fusion.survival.run`: the stage (``run_survival``, ``load_survival_config``) and its command line
  ``python -m fusion.survival``.
"""
