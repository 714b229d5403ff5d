"""Untrusted data-parallel workers: a coordinator that replays before it aggregates.

Run a federated job on this machine (4 workers, one of them attacking)::

    pol workers train --workers 4 --malicious 1 --attack model-replacement --out fed.h5
    pol workers verify fed.h5 --key keys/coordinator.pub

or across hosts with torchrun (every process reads the same node config)::

    torchrun --nnodes 2 --nproc-per-node 3 ... -m pol.workers.node --config job.json

Rank 0 signs a plan (data commitment, shards, keys, schedule, aggregation and verification
policy), then every round sends the global model; each worker returns a signed ``pol-round-v1``
round proof (:mod:`pol.workers.roundproof`); the coordinator admits an update only if it passes
:mod:`pol.workers.admission` (signature, start, schedule, tensors, bitwise replay) and aggregates
the admitted ones (:mod:`pol.workers.aggregate`). Its log (:mod:`pol.workers.log`) is a signed
hash chain that ``pol workers verify`` re-checks. Format and policy: docs/WORKERS.md.
"""

from pol.workers.aggregate import aggregate, coordinate_median, fedavg, krum_select, trimmed_mean
from pol.workers.config import NodeConfig, RunSpec
from pol.workers.launch import launch_local
from pol.workers.log import is_workers_log, read_log
from pol.workers.plan import FederatedPlan

__all__ = ["FederatedPlan", "NodeConfig", "RunSpec", "aggregate", "coordinate_median", "fedavg", "is_workers_log",
           "krum_select", "launch_local", "read_log", "trimmed_mean"]
