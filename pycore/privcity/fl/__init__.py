"""Federated learning: server strategies (FedAvg, robust aggregation, DP-FedAvg with fixed or
adaptive clipping and an accountant), the two sides of a round (gateway and aggregator)
that :mod:`privcity.sim` runs in one process or on MPI ranks, and compressed updates
(:mod:`privcity.fl.compress`)."""
from .compress import Compression as Compression
from .compress import parse_compression as parse_compression
from .rounds import Aggregator as Aggregator
from .rounds import Gateway as Gateway
from .rounds import GatewayReport as GatewayReport
from .rounds import round_cohort as round_cohort
from .strategy import DPFedAvg as DPFedAvg
from .strategy import DistributedDPFedAvg as DistributedDPFedAvg
from .strategy import FedAvg as FedAvg
from .strategy import Strategy as Strategy

__all__ = ["Aggregator", "Compression", "DPFedAvg", "DistributedDPFedAvg", "FedAvg", "Gateway",
           "GatewayReport", "Strategy", "parse_compression", "round_cohort"]
