"""Federated learning: server strategies (FedAvg, robust aggregation, DP-FedAvg with fixed or
adaptive clipping and an accountant) and the two sides of a round (gateway and aggregator)
that :mod:`privcity.sim` runs in one process or on MPI ranks."""
from .rounds import Aggregator as Aggregator
from .rounds import Gateway as Gateway
from .rounds import GatewayReport as GatewayReport
from .rounds import round_cohort as round_cohort
from .strategy import DPFedAvg as DPFedAvg
from .strategy import DistributedDPFedAvg as DistributedDPFedAvg
from .strategy import FedAvg as FedAvg
from .strategy import Strategy as Strategy

__all__ = ["Aggregator", "DPFedAvg", "DistributedDPFedAvg", "FedAvg", "Gateway", "GatewayReport", "Strategy",
           "round_cohort"]
