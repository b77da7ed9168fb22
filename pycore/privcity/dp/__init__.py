"""Differential privacy: calibrated mechanisms, clipping, and a budgeted accountant.

- :class:`GaussianMechanism`, :class:`LaplaceMechanism`: ``release`` (float-safe: a
  data-independent power-of-two grid and exact integer noise) and ``perturb`` (fast float noise
  for simulations). Gaussian calibration by the analytic Gaussian mechanism (Balle and Wang 2018).
- :func:`clip_l2`, :func:`clip_l2_rows`, :class:`AdaptiveClipping` (Andrew et al. 2021).
- :class:`Accountant`: Google's dp-accounting (RDP or PLD) with a budget; refuses, with
  :class:`privcity.PrivacyBudgetExceeded`, a release that would exceed it.

Noise comes from :class:`privcity.noise.SecureRNG`; dp-accounting and scipy are imported on
first use.
"""
from __future__ import annotations

from .accountant import Accountant as Accountant
from .calibration import analytic_gaussian_epsilon as analytic_gaussian_epsilon
from .calibration import analytic_gaussian_sigma as analytic_gaussian_sigma
from .calibration import gaussian_delta as gaussian_delta
from .calibration import laplace_scale as laplace_scale
from .clipping import AdaptiveClipping as AdaptiveClipping
from .clipping import clip_l2 as clip_l2
from .clipping import clip_l2_rows as clip_l2_rows
from .clipping import update_noise_multiplier as update_noise_multiplier
from .mechanisms import GaussianMechanism as GaussianMechanism
from .mechanisms import LaplaceMechanism as LaplaceMechanism
from .mechanisms import ReleaseGrid as ReleaseGrid

__all__ = [
    "Accountant",
    "AdaptiveClipping",
    "GaussianMechanism",
    "LaplaceMechanism",
    "ReleaseGrid",
    "analytic_gaussian_epsilon",
    "analytic_gaussian_sigma",
    "clip_l2",
    "clip_l2_rows",
    "gaussian_delta",
    "laplace_scale",
    "update_noise_multiplier",
]
