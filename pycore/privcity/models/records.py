"""Names of records: ``(device id, row index within the device)``, int64 (n, 2), the ids a
released model file (:mod:`.io`) stores for its training and held-out records.

:func:`record_ids` names every row of a :class:`~privcity.data.FederatedDataset` from its
``offsets`` and ``device_ids``; :func:`record_rows` finds the rows of X such ids name. A set
without devices (a CSV's test split) is named by row index instead: int64 (n,).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks

__all__ = ["check_ids", "record_ids", "record_rows"]


def record_ids(offsets: Any, device_ids: Any) -> np.ndarray:
    """int64 (N, 2) ids ``(device id, row within the device)`` of every row of a
    :class:`~privcity.data.FederatedDataset`, in row order: ``record_ids(ds.offsets,
    ds.device_ids)``. Device ids must be distinct."""
    offs, devs = _check_layout(offsets, device_ids)
    sizes = np.diff(offs)
    out = np.empty((int(offs[-1]), 2), np.int64)
    out[:, 0] = np.repeat(devs, sizes)
    out[:, 1] = np.arange(offs[-1], dtype=np.int64) - np.repeat(offs[:-1], sizes)
    return out


def record_rows(ids: Any, offsets: Any, device_ids: Any) -> np.ndarray:
    """int64 (n,) rows of X named by (n, 2) record ids, the inverse of :func:`record_ids`
    (``X[record_rows(released.member_ids, ds.offsets, ds.device_ids)]``). An id of a device not
    in device_ids or a row beyond its device's rows raises ValueError."""
    offs, devs = _check_layout(offsets, device_ids)
    arr = check_ids(ids, "ids")
    if arr.ndim != 2:
        raise ValueError(f"ids must be (n, 2) (device id, row within the device), got shape "
                         f"{arr.shape}")
    order = np.argsort(devs, kind="stable")
    pos = np.minimum(np.searchsorted(devs[order], arr[:, 0]), max(devs.shape[0] - 1, 0))
    found = devs[order][pos] == arr[:, 0] if devs.size else np.zeros(arr.shape[0], bool)
    if not found.all():
        raise ValueError(f"ids name devices absent from device_ids, e.g. device "
                         f"{arr[~found][0, 0]}")
    d = order[pos]
    beyond = arr[:, 1] >= np.diff(offs)[d]
    if beyond.any():
        i = int(np.flatnonzero(beyond)[0])
        raise ValueError(f"ids name row {arr[i, 1]} of device {arr[i, 0]}, which holds "
                         f"{np.diff(offs)[d[i]]} rows")
    return offs[d] + arr[:, 1]


def _check_layout(offsets: Any, device_ids: Any) -> tuple[np.ndarray, np.ndarray]:
    offs = _checks.int_vector(offsets, "offsets")
    devs = _checks.int_vector(device_ids, "device_ids")
    if offs.shape[0] != devs.shape[0] + 1 or offs[0] != 0 or np.any(np.diff(offs) < 0):
        raise ValueError(f"offsets must be (n_devices + 1,) = ({devs.shape[0] + 1},), "
                         f"non-decreasing from 0, got shape {offs.shape}")
    if np.unique(devs).shape[0] != devs.shape[0]:
        raise ValueError("device_ids must be distinct")
    return offs, devs


def check_ids(ids: Any, name: str) -> np.ndarray:
    """ids as C-contiguous int64 (n,) or (n, 2), non-negative."""
    arr = np.asarray(ids)
    if arr.ndim == 1 and arr.size == 0:
        return np.zeros(0, np.int64)
    if arr.dtype.kind not in "iu" or not (arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 2)):
        raise ValueError(f"{name} must be an int array of shape (n,) (row indices) or (n, 2) "
                         f"(device id, row within the device), got {arr.dtype} {arr.shape}")
    if arr.size and (arr.min() < 0 or int(arr.max()) > np.iinfo(np.int64).max):
        raise ValueError(f"{name} must hold ids in [0, 2**63), got values in "
                         f"[{arr.min()}, {arr.max()}]")
    return np.ascontiguousarray(arr, dtype=np.int64)
