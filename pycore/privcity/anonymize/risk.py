"""Measured re-identification risk: unicity of mobility traces (de Montjoye et al. 2013) and a
linkage attack of released records against an auxiliary table (Sweeney's join on
quasi-identifiers, with generalised values).

Both are attacks run by the evaluator, not protections: their random choices come from numpy's
seeded generator (reproducible experiments), never from the CSPRNG that protects data.

Usage::

    traces = privcity.data.make_gps_traces(10_000, 48)
    unicity(traces, 4, spatial_m=500, temporal_s=3600)           # fraction unique from 4 points
    unicity_curve(traces, 4, [(100, 1800), (1000, 3600), (5000, 4 * 3600)])
    linkage_attack(released, auxiliary, ["age", "gender", "zip"], id_column="name")

Modules, one concern each: ``_unicity`` (unicity of traces), ``_released`` (the grammar of
released values), ``_matcher`` (one quasi-identifier's matcher), ``_linkage`` (the join and its
score); ``_columns`` and ``_geo`` are shared helpers. This module re-exports the public names.
"""
from __future__ import annotations

from ._linkage import linkage_attack
from ._unicity import unicity, unicity_curve

__all__ = ["linkage_attack", "unicity", "unicity_curve"]
