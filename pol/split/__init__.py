"""Split learning across untrusted nodes: every node proves its own stage (docs/SPLIT.md).

Train (each node is a process on torch.distributed; ``pol split train`` spawns them locally,
``torchrun -m pol.split.node`` anywhere)::

    pol split train --stages 3 --task digits-mlp --out run --keys keys

Read a node's proof, and the pipeline id every node signed::

    from pol.split import NodeProofReader
    with NodeProofReader("run/node1.pol.h5") as r:
        r.plan.digest()            # the pipeline id (plan digest)
        r.plan.node_stages(r.rank), r.checkpoint_state(0), r.transcript(1).received()

Verify (``verifier.split``)::

    from verifier.split import verify_pipeline, verify_node
    report = verify_pipeline("run", keys="keys")      # report.verdict, report.blamed, report.nodes

Extension seams: :class:`NodeRuntime` (``approve_plan`` before signing, ``make_program``,
``make_link``, ``checkpoint_state``), :class:`~pol.split.engine.NodeProgram` (``outgoing``,
``apply_updates``), :class:`~pol.split.comm.DistLink` (``make_header``, ``record_sent``, ``transmit``).
"""

from pol.split.engine import NodeProgram, expected_messages
from pol.split.messages import Header, MessageRejected, tensor_digest
from pol.split.plan import PipelinePlan, node_of_stage
from pol.split.planning import SplitConfig, build_plan
from pol.split.proof import NodeProofReader, NodeProofWriter, node_proof_path
from pol.split.reference import train_reference

__all__ = [
    "PipelinePlan", "SplitConfig", "build_plan", "node_of_stage",
    "NodeRuntime", "NodeResult", "NodeProgram", "expected_messages",
    "Header", "MessageRejected", "tensor_digest",
    "NodeProofReader", "NodeProofWriter", "node_proof_path",
    "train_reference",
]


def __getattr__(name: str) -> object:
    # pol.split.node is also run as ``python -m pol.split.node``: importing it here eagerly would
    # load it twice (as pol.split.node and as __main__).
    if name in ("NodeRuntime", "NodeResult"):
        from pol.split import node

        return getattr(node, name)
    raise AttributeError(name)
