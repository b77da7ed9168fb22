"""Record schemas: each field carries its kind, its sensitivity and, for noise, its bounds."""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Field", "Schema", "KINDS", "SENSITIVITIES"]

KINDS = ("numeric", "categorical")
SENSITIVITIES = ("public", "quasi", "sensitive")


@dataclass(frozen=True)
class Field:
    """One column of a record.

    Parameters
    ----------
    name : str
        Column name, non-empty.
    kind : {"numeric", "categorical"}
        Categorical values are integer codes ``lower .. upper`` (both given, integers).
    sensitivity : {"public", "quasi", "sensitive"}
        ``sensitive`` fields are noised or dropped on the device (:func:`privcity.data.preprocess`);
        ``quasi`` fields (location, age, ...) identify people in combination and are left to
        anonymization.
    unit : str
        Physical unit, for reports ("veh/h", "ug/m3", ...).
    lower, upper : float, optional
        Bounds of the value. The Laplace treatment clips to them and calibrates its noise to
        ``upper - lower``.
    period : float, optional
        For cyclic numeric fields (hour of day: 24): encoded as sin and cos of 2 pi x / period.

    Raises
    ------
    ValueError
        Bad kind or sensitivity, lower >= upper, non-finite bounds, a categorical field without
        integer bounds, a period <= 0; the message names the field.
    """

    name: str
    kind: str
    sensitivity: str
    unit: str = ""
    lower: float | None = None
    upper: float | None = None
    period: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"field name must be a non-empty str, got {self.name!r}")
        where = f"field {self.name!r}"
        if self.kind not in KINDS:
            raise ValueError(f"{where}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.sensitivity not in SENSITIVITIES:
            raise ValueError(f"{where}: sensitivity must be one of {SENSITIVITIES}, got {self.sensitivity!r}")
        for bound in ("lower", "upper"):
            v = getattr(self, bound)
            if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool)
                                      and math.isfinite(v)):
                raise ValueError(f"{where}: {bound} must be a finite number or None, got {v!r}")
        if self.lower is not None and self.upper is not None and not self.lower < self.upper:
            raise ValueError(f"{where}: lower must be < upper, got [{self.lower}, {self.upper}]")
        if self.kind == "categorical":
            if self.lower is None or self.upper is None or self.lower != int(self.lower) \
                    or self.upper != int(self.upper):
                raise ValueError(f"{where}: a categorical field needs integer bounds lower..upper "
                                 "(its codes)")
            if self.period is not None:
                raise ValueError(f"{where}: a categorical field has no period")
        if self.period is not None and not (isinstance(self.period, (int, float))
                                            and math.isfinite(self.period) and self.period > 0):
            raise ValueError(f"{where}: period must be a finite number > 0, got {self.period!r}")

    @property
    def bounded(self) -> bool:
        """True when both bounds are given."""
        return self.lower is not None and self.upper is not None

    @property
    def n_categories(self) -> int:
        """Number of codes of a categorical field (0 for numeric fields)."""
        if self.kind != "categorical":
            return 0
        return int(self.upper) - int(self.lower) + 1  # type: ignore[arg-type]


@dataclass(frozen=True)
class Schema:
    """The fields of a record type and which one is the learning target.

    Parameters
    ----------
    fields : tuple of Field
        Unique names, at least one besides the target.
    target : str
        Name of the target field.
    """

    fields: tuple[Field, ...]
    target: str

    def __post_init__(self) -> None:
        fields = tuple(self.fields)
        object.__setattr__(self, "fields", fields)
        names = [f.name for f in fields]
        for f in fields:
            if not isinstance(f, Field):
                raise TypeError(f"schema fields must be Field, got {type(f).__name__}")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate field names in schema: {dup}")
        if self.target not in names:
            raise ValueError(f"target {self.target!r} is not a field of the schema (fields: {names})")
        if len(fields) < 2:
            raise ValueError("a schema needs at least one feature besides the target")

    @property
    def names(self) -> list[str]:
        """All field names, in order."""
        return [f.name for f in self.fields]

    @property
    def features(self) -> list[str]:
        """Names of the non-target fields, in order."""
        return [f.name for f in self.fields if f.name != self.target]

    @property
    def feature_fields(self) -> tuple[Field, ...]:
        """The non-target fields, in order."""
        return tuple(f for f in self.fields if f.name != self.target)

    def field(self, name: str) -> Field:
        """The field called ``name``; KeyError naming it when absent."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"no field {name!r} in schema (fields: {self.names})")

    def sensitive(self) -> list[str]:
        """Names of the sensitive fields (target included when it is sensitive)."""
        return [f.name for f in self.fields if f.sensitivity == "sensitive"]

    def quasi_identifiers(self) -> list[str]:
        """Names of the quasi-identifier fields."""
        return [f.name for f in self.fields if f.sensitivity == "quasi"]

    def with_sensitivity(self, sensitivity: dict[str, str] | Iterable[tuple[str, str]]) -> Schema:
        """A copy with the sensitivity of the named fields replaced."""
        changes = dict(sensitivity)
        for name in changes:
            self.field(name)
        fields = tuple(Field(f.name, f.kind, changes.get(f.name, f.sensitivity), f.unit, f.lower,
                             f.upper, f.period) for f in self.fields)
        return Schema(fields, self.target)
