"""Anonymization on the device: k-anonymity (Mondrian), l-diversity, t-closeness, location
privacy, pseudonyms, and the measured re-identification risk that remains.

- :mod:`.tabular`: ``mondrian`` (k, distinct/entropy l, t-closeness; numeric ranges and
  categorical hierarchies) and independent checkers ``k_anonymity``, ``l_diversity``,
  ``t_closeness``, with the utility measures ``ncp`` and ``discernibility``.
- :mod:`.location`: metric-grid and geohash generalisation, ``coarsen_time``, spatial
  k-cloaking (Gruteser and Grunwald 2003), geo-indistinguishability (planar Laplace, Andres et
  al. 2013) from the CSPRNG.
- :mod:`.pseudonyms`: ``Pseudonymizer``, keyed HMAC-SHA256 pseudonyms rotating by epoch.
- :mod:`.risk`: ``unicity`` of traces (de Montjoye et al. 2013) and a ``linkage_attack``.
"""
from .location import EARTH_RADIUS_M as EARTH_RADIUS_M
from .location import coarsen_time as coarsen_time
from .location import geo_indistinguishable as geo_indistinguishable
from .location import geohash_decode as geohash_decode
from .location import geohash_encode as geohash_encode
from .location import geohash_generalize as geohash_generalize
from .location import grid_generalize as grid_generalize
from .location import spatial_cloak as spatial_cloak
from .pseudonyms import Pseudonymizer as Pseudonymizer
from .risk import linkage_attack as linkage_attack
from .risk import unicity as unicity
from .risk import unicity_curve as unicity_curve
from .tabular import discernibility as discernibility
from .tabular import k_anonymity as k_anonymity
from .tabular import l_diversity as l_diversity
from .tabular import mondrian as mondrian
from .tabular import ncp as ncp
from .tabular import t_closeness as t_closeness

__all__ = [
    "EARTH_RADIUS_M", "Pseudonymizer", "coarsen_time", "discernibility", "geo_indistinguishable",
    "geohash_decode", "geohash_encode", "geohash_generalize", "grid_generalize", "k_anonymity",
    "l_diversity", "linkage_attack", "mondrian", "ncp", "spatial_cloak", "t_closeness",
    "unicity", "unicity_curve",
]
