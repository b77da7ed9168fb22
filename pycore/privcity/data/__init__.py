"""Data for smart-city learning: schemas with sensitivity flags, a seeded synthetic city,
federated tasks with non-IID partitions, a CSV loader and on-device preprocessing.

- :class:`Field`, :class:`Schema`: kind, sensitivity (public / quasi / sensitive), unit, bounds.
- :func:`traffic_records`, :func:`environment_records`, :func:`smart_meter_records`,
  :func:`make_gps_traces`: raw records in physical units. Device (person) i depends on
  (seed, i) only -- counter-based hashing, no numpy Generator state -- so MPI ranks generate
  their own blocks and get the same rows as one process would.
- :func:`make_city`, :func:`make_test_set`, :class:`FederatedDataset`: the ``traffic``,
  ``air_quality`` and ``energy`` tasks, partitioned by district or Dirichlet(alpha) over labels.
- :func:`load_csv`: real data (split by pyarrow.csv, read by the csv module's and float()'s
  rules); a rank may keep only its devices' rows (``keep``).
- :func:`preprocess`: what a device releases: sensitive fields noised (Laplace, from
  :class:`privcity.noise.SecureRNG`) or dropped by their flag.

Synthetic data is for simulation only: it is generated with a fast non-cryptographic hash.
"""
from __future__ import annotations

from .city import CITY_EPOCH as CITY_EPOCH
from .city import Records as Records
from .city import environment_records as environment_records
from .city import environment_schema as environment_schema
from .city import smart_meter_records as smart_meter_records
from .city import smart_meter_schema as smart_meter_schema
from .city import traffic_records as traffic_records
from .city import traffic_schema as traffic_schema
from .csvload import load_csv as load_csv
from .encode import Encoder as Encoder
from .federated import FederatedDataset as FederatedDataset
from .federated import air_quality_schema as air_quality_schema
from .federated import make_city as make_city
from .federated import make_test_set as make_test_set
from .gps import GPS_DTYPE as GPS_DTYPE
from .gps import make_gps_traces as make_gps_traces
from .preprocess import default_treatment as default_treatment
from .preprocess import preprocess as preprocess
from .schema import Field as Field
from .schema import Schema as Schema

__all__ = [
    "CITY_EPOCH",
    "GPS_DTYPE",
    "Encoder",
    "FederatedDataset",
    "Field",
    "Records",
    "Schema",
    "air_quality_schema",
    "default_treatment",
    "environment_records",
    "environment_schema",
    "load_csv",
    "make_city",
    "make_gps_traces",
    "make_test_set",
    "preprocess",
    "smart_meter_records",
    "smart_meter_schema",
    "traffic_records",
    "traffic_schema",
]
