"""What each party can learn: attacks that measure privacy instead of asserting it.

Each attack works on its own, on numpy arrays and privcity.models models, and says what its
attacker sees.

- Update inversion (:mod:`.inversion`), the server that reads one device's update:
  :func:`invert_update` recovers the record of a one-record device exactly from a linear
  model's (or an MLP's first layer's) update, and its label; from several records, a sum of
  devices' updates or a noisy sum it returns a mixture (:func:`mixture_weights` says of what).
  :func:`inversion_report`: the share of records recovered within a tolerance.
  :func:`reconstruct` (:mod:`.optimize`, gradient matching after Geiping et al. 2020) searches
  a device's k records themselves, separating a few (at most about ``(F + 1)(C - 1) / F``);
  :func:`optimize_report` scores it per device as inversion_report does.
- Membership inference (:mod:`.membership`), whoever holds the released model: the
  loss-threshold attack (Yeom et al. 2018), the difficulty-calibrated one (Watson et al. 2022)
  and offline LiRA (Carlini et al. 2022) with reference models privcity trains itself
  (:func:`train_reference_models`), per record and per device (:func:`device_scores`).
- The epsilon itself (:mod:`.audit`, :mod:`.fedavg_audit`), checked against a one-run lower
  bound (Steinke, Nasr, Jagielski 2023): :func:`one_run_epsilon_bound` from guess counts,
  :func:`audit_canary_scores` from canary scores, and :func:`audit_fedavg`, canary devices
  through privcity's own FedAvg, DP-FedAvg and distributed DP, the bound after each round beside
  the accountant's epsilon.
- Their figures (:mod:`.roc`): :func:`evaluate_scores` gives the ROC curve, AUC, TPR at FPR 1%
  and 0.1% and the membership advantage.

Example
-------
>>> import numpy as np
>>> from privcity.models import SoftmaxRegression, train_local
>>> from privcity.attacks import invert_update
>>> model = SoftmaxRegression(n_features=3, n_classes=2)
>>> x = np.array([[0.5, -1.0, 2.0]], np.float32)
>>> start = model.init_params(0)
>>> update = train_local(model, start, x, [1], epochs=3, lr=0.1) - start
>>> x_hat, label = invert_update(model, update)
>>> bool(np.allclose(x_hat, x[0], rtol=1e-5)), label
(True, 1)
"""
from __future__ import annotations

from .audit import CanaryAudit as CanaryAudit
from .audit import audit_canary_scores as audit_canary_scores
from .audit import canary_guesses as canary_guesses
from .audit import default_guess_grid as default_guess_grid
from .audit import one_run_epsilon_bound as one_run_epsilon_bound
from .audit import one_run_p_value as one_run_p_value
from .fedavg_audit import AuditResult as AuditResult
from .fedavg_audit import audit_ddg_params as audit_ddg_params
from .fedavg_audit import audit_fedavg as audit_fedavg
from .inversion import Inversion as Inversion
from .inversion import InversionReport as InversionReport
from .inversion import inversion_report as inversion_report
from .inversion import inversion_success as inversion_success
from .inversion import invert_update as invert_update
from .inversion import mixture_weights as mixture_weights
from .inversion import relative_error as relative_error
from .optimize import MatchingLoss as MatchingLoss
from .optimize import Reconstruction as Reconstruction
from .optimize import guess_labels as guess_labels
from .optimize import matching_loss as matching_loss
from .optimize import optimize_report as optimize_report
from .optimize import reconstruct as reconstruct
from .membership import calibrated_scores as calibrated_scores
from .membership import confidence_statistic as confidence_statistic
from .membership import device_scores as device_scores
from .membership import example_losses as example_losses
from .membership import lira_offline_scores as lira_offline_scores
from .membership import loss_threshold_scores as loss_threshold_scores
from .membership import train_reference_models as train_reference_models
from .roc import AttackROC as AttackROC
from .roc import evaluate_scores as evaluate_scores
from .roc import roc_auc as roc_auc
from .roc import roc_curve as roc_curve
from .roc import tpr_at_fpr as tpr_at_fpr

__all__ = [
    "AttackROC",
    "AuditResult",
    "CanaryAudit",
    "Inversion",
    "InversionReport",
    "MatchingLoss",
    "Reconstruction",
    "audit_canary_scores",
    "audit_ddg_params",
    "audit_fedavg",
    "calibrated_scores",
    "canary_guesses",
    "confidence_statistic",
    "default_guess_grid",
    "device_scores",
    "evaluate_scores",
    "guess_labels",
    "example_losses",
    "inversion_report",
    "inversion_success",
    "invert_update",
    "lira_offline_scores",
    "matching_loss",
    "loss_threshold_scores",
    "mixture_weights",
    "one_run_epsilon_bound",
    "one_run_p_value",
    "optimize_report",
    "reconstruct",
    "relative_error",
    "roc_auc",
    "roc_curve",
    "tpr_at_fpr",
    "train_reference_models",
]
