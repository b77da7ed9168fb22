"""Differential privacy: calibrated mechanisms, clipping, and a budgeted accountant.

- :class:`GaussianMechanism`, :class:`LaplaceMechanism`: ``release`` (float-safe: a
  data-independent power-of-two grid and exact integer noise) and ``perturb`` (fast float noise
  for simulations). Gaussian calibration by the analytic Gaussian mechanism (Balle and Wang 2018).
- :func:`clip_l2`, :func:`clip_l2_rows`, :class:`AdaptiveClipping` (Andrew et al. 2021).
- :class:`Accountant`: Google's dp-accounting (RDP or PLD) with a budget; refuses, with
  :class:`privcity.PrivacyBudgetExceeded`, a release that would exceed it.
- :mod:`privcity.dp.distributed`: the distributed discrete Gaussian under secure aggregation
  (Kairouz, Liu, Steinke 2021): :func:`ddg_params`, :func:`ddg_encode` (device),
  :func:`ddg_decode` (server), :func:`ddg_epsilon`; the accountant records its rounds.

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
from .distributed import DDGEncoding as DDGEncoding
from .distributed import DDGParams as DDGParams
from .distributed import ddg_decode as ddg_decode
from .distributed import ddg_encode as ddg_encode
from .distributed import ddg_encode_parts as ddg_encode_parts
from .distributed import ddg_epsilon as ddg_epsilon
from .distributed import ddg_params as ddg_params
from .distributed import ddg_rdp as ddg_rdp
from .distributed import ddg_rotation_key as ddg_rotation_key
from .mechanisms import GaussianMechanism as GaussianMechanism
from .mechanisms import LaplaceMechanism as LaplaceMechanism
from .mechanisms import ReleaseGrid as ReleaseGrid

__all__ = [
    "Accountant",
    "AdaptiveClipping",
    "DDGEncoding",
    "DDGParams",
    "GaussianMechanism",
    "LaplaceMechanism",
    "ReleaseGrid",
    "analytic_gaussian_epsilon",
    "analytic_gaussian_sigma",
    "clip_l2",
    "clip_l2_rows",
    "ddg_decode",
    "ddg_encode",
    "ddg_encode_parts",
    "ddg_epsilon",
    "ddg_params",
    "ddg_rdp",
    "ddg_rotation_key",
    "gaussian_delta",
    "laplace_scale",
    "update_noise_multiplier",
]
