"""Who may vote in a round: the city's record of which gateway hosts which device, the devices
it enrolled (bound to the gateway that enrolled them), and the kinds of refusal the aggregator
counts.

One device, one vote: :class:`~privcity.fl.Aggregator` admits at most one update per (device,
round), only from a device the server sampled into the round (never on a gateway's word),
relayed by the gateway that hosts it and enrolled it, sealed for the round's epoch. Everything
else is refused alone, counted under one of :data:`REFUSAL_KINDS`, and never reaches the sum.

Which copy wins when a device sent several authentic, well-formed updates in a round: the one
with the lowest envelope counter, i.e. the first the device sealed. Counters are the device's
own (strictly increasing), so the choice does not depend on the order of arrival, on which
gateway or rank carried them, or on how the batch was split; the others count as "duplicate".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import AuthenticationError, EnvelopeError, PrivcityError

__all__ = ["ENROL_REFUSALS", "ENVELOPE_REFUSALS", "REFUSAL_KINDS", "VOTE_REFUSALS",
           "DeviceRegistry", "OpenedRound", "items_of", "refusal_kind"]

#: Why an enrolment request is refused: it does not parse (device id, key lengths, a key no
#: key can be agreed with), the device is not hosted by the gateway that asks, or the device is
#: already enrolled by another gateway or with other keys.
ENROL_REFUSALS = ("enrol_malformed", "enrol_wrong_gateway", "enrol_conflict")
#: Why the envelope layer refuses an envelope: :attr:`EnvelopeError.KINDS`, and
#: "authentication" for a bad tag.
ENVELOPE_REFUSALS = tuple(EnvelopeError.KINDS) + ("authentication",)
#: Why the aggregator's own checks refuse an envelope, in the order they run: the sender is no
#: enrolled device; another gateway relayed it; sealed for another epoch; its device was not
#: sampled (these four on the header, before decryption); then, once authentic, a payload that
#: is not a float tensor of the model's width ("malformed", shared with the envelope layer) or
#: holds NaN or Inf; then a second update of a device in the round.
VOTE_REFUSALS = ("unknown_device", "wrong_gateway", "wrong_epoch", "not_sampled", "malformed",
                 "non_finite", "duplicate")
#: Every kind a round's "refusals" may hold.
REFUSAL_KINDS = tuple(dict.fromkeys(ENROL_REFUSALS + ENVELOPE_REFUSALS + VOTE_REFUSALS))


def refusal_kind(exc: PrivcityError) -> str:
    """The refusal kind of an envelope-layer error (EnvelopeError or AuthenticationError)."""
    if isinstance(exc, AuthenticationError):
        return "authentication"
    if isinstance(exc, EnvelopeError):
        return exc.kind
    raise TypeError(f"not an envelope refusal: {type(exc).__name__}")


@dataclass
class OpenedRound:
    """What :meth:`Aggregator.open` admitted: one update per device, in ascending device id,
    the adaptive-clipping bits (empty without them), and the refusals by kind (non-zero counts
    only, sorted by kind)."""

    device_ids: np.ndarray
    updates: np.ndarray
    bits: np.ndarray
    refusals: dict[str, int] = field(default_factory=dict)

    @property
    def refused(self) -> int:
        """How many envelopes (and enrolments, if merged in) were refused in all."""
        return sum(self.refusals.values())


def items_of(relayed: Any, gateway: int, refusals: Any) -> list[Any]:
    """What a gateway relayed, as a list; anything that is not a list or tuple (under MPI it
    comes unpickled from the gateway's rank) counts as one "malformed" refusal and gives []."""
    if isinstance(relayed, (list, tuple)):
        return list(relayed)
    refusals["malformed"] += 1
    return []


def as_device_ids(devices: Any, name: str) -> np.ndarray:
    arr = np.asarray(devices)
    if arr.ndim != 1 or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be a 1-D array of integer device ids")
    return np.unique(arr.astype(np.int64))


def member(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Mask of ``ids`` found in ``sorted_ids`` (ascending, unique)."""
    if sorted_ids.size == 0:
        return np.zeros(ids.shape, bool)
    pos = np.searchsorted(sorted_ids, ids).clip(max=sorted_ids.size - 1)
    return sorted_ids[pos] == ids


class DeviceRegistry:
    """Which gateway hosts each device (the city decides: :meth:`assign`), and which devices
    are enrolled, by which gateway, with which public keys (:meth:`bind`)."""

    def __init__(self) -> None:
        self._hosted: dict[int, np.ndarray] = {}  # gateway -> its device ids, ascending
        self._enrolled: dict[int, tuple[int, bytes]] = {}  # device -> (gateway, public keys)
        self._senders: dict[str, int] = {}  # envelope sender id -> device

    def assign(self, gateway: int, devices: Any) -> None:
        """Record that ``gateway`` hosts ``devices``; a device has one gateway, and a gateway is
        assigned once (ValueError otherwise)."""
        if isinstance(gateway, bool) or not isinstance(gateway, (int, np.integer)):
            raise TypeError(f"gateway must be an int, not {type(gateway).__name__}")
        gateway = int(gateway)
        if gateway in self._hosted:
            raise ValueError(f"gateway {gateway} already has its devices")
        ids = as_device_ids(devices, "devices")
        for other, theirs in self._hosted.items():
            # Gateways host contiguous blocks in the simulator: disjoint ranges skip the search.
            if ids.size and theirs.size and ids[0] <= theirs[-1] and theirs[0] <= ids[-1] \
                    and member(theirs, ids).any():
                raise ValueError(f"devices of gateway {gateway} are already hosted by gateway "
                                 f"{other}")
        self._hosted[gateway] = ids

    def hosts(self, gateway: int, device: int) -> bool:
        ids = self._hosted.get(gateway)
        return ids is not None and bool(member(ids, np.array([device], np.int64))[0])

    def hosts_all(self, gateway: int, devices: np.ndarray) -> bool:
        """Whether ``gateway`` hosts every one of ``devices`` (int64 ids)."""
        ids = self._hosted.get(gateway)
        return ids is not None and bool(member(ids, devices).all())

    def check(self, gateway: int, device: int, keys: bytes) -> str | None:
        """The refusal kind of enrolling ``device`` with ``keys`` through ``gateway``, "" if it
        is enrolled so already (nothing to do), None if it may be enrolled."""
        if not self.hosts(gateway, device):
            return "enrol_wrong_gateway"
        held = self._enrolled.get(device)
        if held is None:
            return None
        return "" if held == (gateway, keys) else "enrol_conflict"

    def bind(self, gateway: int, device: int, keys: bytes, sender_id: str) -> None:
        """Record ``device`` as enrolled by ``gateway`` (after :meth:`check` allowed it)."""
        self._enrolled[device] = (gateway, keys)
        self._senders[sender_id] = device

    def device_of(self, sender_id: str) -> int | None:
        """The enrolled device that seals as ``sender_id``, or None."""
        return self._senders.get(sender_id)

    def home(self, device: int) -> int:
        """The gateway that enrolled ``device`` (which must be enrolled)."""
        return self._enrolled[device][0]

    def is_enrolled(self, device: int) -> bool:
        return device in self._enrolled
