"""The synthetic city of a run, device by device (what runner and attacks both generate)."""
from __future__ import annotations

from typing import Any, Sequence

from .config import SimConfig

__all__ = ["city"]


def city(cfg: SimConfig, devices: range | Sequence[int] | Any | None, n_devices: int) -> Any:
    """FederatedDataset of ``devices`` (None: all) of a city of ``n_devices`` with the run's
    task, partition and on-device treatment. Device d's rows depend on its id, not on
    ``n_devices``, so ids past ``cfg.devices`` are held-out devices of the same population."""
    from .. import data
    return data.make_city(cfg.task, n_devices=n_devices,
                          samples_per_device=cfg.samples_per_device,
                          n_districts=cfg.districts, seed=cfg.seed, devices=devices,
                          partition=cfg.partition, alpha=cfg.alpha,
                          # On-device noise of the schema's sensitive fields, one seeded stream
                          # per device (a simulation), so blocks and ranks agree.
                          epsilon=cfg.field_epsilon or None,
                          treatment=cfg.treatment or None,
                          noise_seed=cfg.seed if (cfg.field_epsilon or cfg.treatment) else None)
