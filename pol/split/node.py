"""One node of a split-learning pipeline: ``python -m pol.split.node`` (under torchrun or
``pol split train``).

Every process reads its rank from the torchrun environment (``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``, ``MASTER_PORT``), joins the process group (gloo on CPU, NCCL with CUDA),
agrees on the pipeline plan with the others (:mod:`pol.split.planning`), trains the stages it
holds through a signed link (:mod:`pol.split.comm`) and writes its own proof
``OUT/node<rank>.pol.h5`` (:mod:`pol.split.proof`)::

    torchrun --nproc-per-node 3 -m pol.split.node --task digits-mlp --stages 3 --out run --keys keys
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from pol.errors import InputError, PolError

RESULT_PREFIX = "POL_SPLIT_RESULT "


@dataclass(frozen=True)
class NodeResult:
    rank: int
    proof: str | None
    plan_digest: str
    num_steps: int
    seconds: float
    final_loss: float | None
    transcript_bytes: int = 0
    raw_transcript_bytes: int = 0
    commitment: str | None = None
    commit_seconds: float = 0.0
    attest_seconds: float = 0.0


def node_key_path(keys_dir: str | Path, rank: int) -> Path:
    return Path(keys_dir) / f"node{rank}.key"


def ensure_key(path: Path) -> Any:
    """Load the node's secret key, creating the pair (``<name>.key``/``.pub``) when missing."""
    from pol.keys import generate_keypair, load_signing_key

    if not path.exists():
        generate_keypair(path.with_suffix(""))
        print(f"pol split: created key pair {path.with_suffix('')}.key/.pub", file=sys.stderr, flush=True)
    return load_signing_key(path)


class NodeRuntime:
    """Sets up, trains and records one node. Attack simulations subclass it (``--node-impl``)
    and override :meth:`make_program`, :meth:`make_link` or :meth:`checkpoint_state`."""

    def __init__(self, config: Any, *, rank: int, world: int, device: str, out_dir: str | Path,
                 keys_dir: str | Path, key_path: str | Path | None = None, force: bool = False,
                 attest: str | Path | None = None, commit: bool = False):
        self.config, self.rank, self.world, self.device = config, rank, world, device
        self.out_dir, self.keys_dir, self.force = Path(out_dir), Path(keys_dir), force
        self.attest = Path(attest) if attest else None   # simulated-TEE state dir (--attest)
        self.commit = commit                              # commit the final weights (--commit)
        self.attest_seconds = 0.0
        self.key_path = Path(key_path) if key_path else node_key_path(keys_dir, rank)
        self.key: Any = None
        self.agreed: Any = None
        self.data: Any = None
        self.label_noise_secret: bytes | None = None   # the label owner's, when the run adds label noise

    # -- seams ------------------------------------------------------------------------------
    def make_program(self, plan: Any, stages: list[Any], data: Any) -> Any:
        from pol.split.engine import NodeProgram

        return NodeProgram(plan, self.rank, stages, data, self.device, self.label_noise_secret)

    def make_link(self, plan: Any, key: Any, recorder: Any) -> Any:
        from pol.split.comm import DistLink

        return DistLink(plan, self.rank, self.device, key, recorder)

    def checkpoint_state(self, stages: list[Any], step: int) -> dict[str, Any]:
        from pol.split.node_state import capture_node

        return capture_node(stages, step)

    def approve_plan(self, plan: Any) -> None:
        """Called on every node before it signs the agreed plan; raise to refuse it. With
        ``--attest`` every node attests (simulated TEE) and the run stops unless all are admitted
        (:mod:`certify.pipeline_attestation`). Default: accept."""
        if self.attest is not None:
            from certify.pipeline_attestation import attest_pipeline

            started = time.perf_counter()
            attest_pipeline(self, plan, self.attest)
            self.attest_seconds = time.perf_counter() - started

    def attestation_answer(self, platform: Any, plan: Any, nonce: bytes) -> tuple[bytes, bytes]:
        """(nonce answered, quote) for the checker's ``nonce``: a quote of this node's enclave
        binding its rank, stages, proof-signing key and the plan digest (attacks override it)."""
        from certify.pipeline_attestation import honest_answer

        return honest_answer(platform, plan, self.rank, bytes(self.key.verify_key), nonce)

    # -- set-up -----------------------------------------------------------------------------
    def setup(self) -> None:
        """Load (or create) the key, load the data this node owns, agree on and sign the plan."""
        from pol.envinfo import environment_fingerprint
        from pol.split import label_noise
        from pol.split.data import node_data
        from pol.split.plan import node_of_stage
        from pol.split.planning import agree_plan, data_spec

        cfg = self.config
        owners = node_of_stage(cfg.stages, cfg.labels_at)
        if self.world != max(owners) + 1:
            raise InputError(f"this pipeline ({cfg.stages} stages, labels at the {cfg.labels_at} node) has "
                             f"{max(owners) + 1} nodes, but {self.world} processes were started")
        self.key = ensure_key(self.key_path)
        self.data = node_data(data_spec(cfg), cfg.data_kwargs, features=self.rank == 0,
                              labels=self.rank == owners[-1])
        env = environment_fingerprint(self.device)
        noise_commitment = None
        if cfg.label_noise and self.rank == owners[-1]:
            self.label_noise_secret = label_noise.new_secret()
            noise_commitment = label_noise.commitment(self.label_noise_secret)
        self.agreed = agree_plan(cfg, self.rank, self.key, env, self.data.features, self.data.labels,
                                 self.device, self.keys_dir, approve=self.approve_plan,
                                 label_noise_commitment=noise_commitment)
        if self.label_noise_secret is not None:  # opened only to the verifier of this node (it holds the labels)
            label_noise.write_secret(label_noise.secret_path(self.out_dir, self.rank), self.label_noise_secret,
                                     force=self.force)

    def build_stages(self) -> list[Any]:
        from pol.split.node_state import StageHolder
        from pol.split.stages import build_stage

        plan = self.agreed.plan
        holders = []
        for s in plan.node_stages(self.rank):
            spec = plan.stages[s]
            module = build_stage(spec["module"]["spec"], spec["module"]["kwargs"], plan.seed, s)
            holders.append(StageHolder.create(s, module, spec["optimizer"], spec["lr_schedule"], self.device))
        return holders

    # -- training ---------------------------------------------------------------------------
    def train(self, *, record: bool = True, proof_path: str | Path | None = None) -> NodeResult:
        """Train the whole run once; with ``record`` False: the bare pipeline (no signing,
        checking, hashing or recording), for overhead measurements."""
        from pol.plan import utc_now
        from pol.split.proof import NodeProofWriter, node_proof_path
        from pol.split.transcript import TranscriptRecorder

        plan = self.agreed.plan
        stages = self.build_stages()
        program = self.make_program(plan, stages, self.data)
        recorder = TranscriptRecorder() if record else None
        link = self.make_link(plan, self.key if record else None, recorder)
        writer = None
        path = Path(proof_path) if proof_path else node_proof_path(self.out_dir, self.rank)
        if record:
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = NodeProofWriter(path, plan=plan, plan_bytes=self.agreed.plan_bytes,
                                     plan_signatures=self.agreed.signatures, rank=self.rank, key=self.key,
                                     overwrite=self.force)
            writer.submit(0, 0, self.checkpoint_state(stages, 0), None)
        started = time.perf_counter()
        switch = sys.getswitchinterval()
        if record:  # hand the GIL back to the training thread within 0.5 ms of the writer thread
            sys.setswitchinterval(min(switch, 0.0005))  # holding it (a pipeline waits on every node)
        try:
            for t in range(plan.num_steps):
                program.step(t, link)
                if writer is not None and ((t + 1) % plan.every == 0 or t + 1 == plan.num_steps):
                    index = -(-(t + 1) // plan.every)
                    writer.submit(index, t + 1, self.checkpoint_state(stages, t + 1), recorder.take())  # type: ignore[union-attr]
            if writer is not None:
                writer.finish(plan.num_steps, utc_now())
        except BaseException:
            if writer is not None:
                writer.close()
            raise
        finally:
            sys.setswitchinterval(switch)
        seconds = time.perf_counter() - started
        commitment, commit_seconds = None, 0.0
        if record and self.commit:
            from certify.node_commitment import commit_node

            commit_started = time.perf_counter()
            commitment = str(commit_node(path, self.out_dir)[0])
            commit_seconds = time.perf_counter() - commit_started
        return NodeResult(self.rank, str(path) if record else None, plan.digest().hex(), plan.num_steps,
                          round(seconds, 4), program.last_loss,
                          writer.transcript_bytes if writer else 0, writer.raw_transcript_bytes if writer else 0,
                          commitment, round(commit_seconds, 4), round(self.attest_seconds, 4))


def load_runtime_class(spec: str | None) -> type[NodeRuntime]:
    if not spec:
        return NodeRuntime
    from pol.tasks import import_callable

    cls = import_callable(spec)
    if not (isinstance(cls, type) and issubclass(cls, NodeRuntime)):
        raise InputError(f"--node-impl {spec!r} is not a NodeRuntime subclass")
    return cls


def config_options(fn: Any) -> Any:
    """The options that make a :class:`~pol.split.planning.SplitConfig` (shared with ``pol split train``)."""
    options = [
        click.option("--task", default="digits-mlp", show_default=True,
                     help="Task whose data and built-in split to use (digits-mlp, digits-cnn)."),
        click.option("--stages", type=int, default=3, show_default=True, help="Number of model stages."),
        click.option("--labels-at", type=click.Choice(["last", "first"]), default="last", show_default=True,
                     help="last: the last stage's node owns the labels; first: U-shaped, the data owner also "
                          "holds the head."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--steps", type=int, default=None, help="Steps to train (default: --epochs)."),
        click.option("--epochs", type=int, default=None, help="Epochs to train (default 1)."),
        click.option("--every", type=int, default=10, show_default=True, help="k: checkpoint every k steps."),
        click.option("--micro-batches", type=int, default=2, show_default=True,
                     help="Micro-batches per step (GPipe schedule, committed in the plan)."),
        click.option("--batch-size", type=int, default=None, help="Batch size (default: the task's)."),
        click.option("--lr", type=float, default=None, help="Learning rate (default: the task's)."),
        click.option("--schedule", type=click.Choice(["constant", "cosine"]), default="constant", show_default=True),
        click.option("--codec", type=click.Choice(["delta-zstd", "raw"]), default="delta-zstd", show_default=True),
        click.option("--compact", type=int, default=None,
                     help="Compact proofs: store whole checkpoints only every K checkpoints (anchors)."),
        click.option("--stage-module", "stage_modules", multiple=True,
                     help="module:callable building each stage (repeat once per stage) instead of a built-in split."),
        click.option("--data", default=None, help="module:callable giving the data (default: the task's)."),
        click.option("--label-noise", default=None, metavar="KIND[:RATIO]",
                     help="Label protection: the label owner adds noise (iso or max_norm) to the gradients its head "
                          "sends, drawn from a secret committed in the plan (docs/PRIVACY.md)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def make_config(**kw: Any) -> Any:
    from pol.split.planning import SplitConfig

    return SplitConfig(task=kw["task"], stages=kw["stages"], labels_at=kw["labels_at"], seed=kw["seed"],
                       steps=kw["steps"], epochs=kw["epochs"], every=kw["every"], micro_batches=kw["micro_batches"],
                       batch_size=kw["batch_size"], lr=kw["lr"], schedule=kw["schedule"], codec=kw["codec"],
                       compact=kw["compact"], stage_modules=tuple(kw["stage_modules"]), data=kw["data"],
                       label_noise=kw.get("label_noise"))


@click.command("node")
@config_options
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory for node<rank>.pol.h5.")
@click.option("--keys", "keys_dir", required=True, type=click.Path(file_okay=False),
              help="Key directory: this node's secret key node<rank>.key (created if missing) and the public "
                   "keys it trusts (*.pub).")
@click.option("--key", "key_path", default=None, help="This node's secret key file ({rank} is replaced).")
@click.option("--threads", type=int, default=1, show_default=True, help="torch threads (recorded in the plan).")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds to wait for a peer.")
@click.option("--force", is_flag=True, help="Overwrite an existing proof.")
@click.option("--node-impl", default=None, help="module:callable, a NodeRuntime subclass (attack simulations).")
@click.option("--node-impl-kwargs", default="{}", help="JSON kwargs for --node-impl.")
@click.option("--attest", default=None, type=click.Path(file_okay=False),
              help="Attest every node before the plan is signed (SIMULATED TEE; a `pol tee init` state dir).")
@click.option("--commit", is_flag=True, help="Commit the final weights (zk), bound to the signed chain.")
def node_cmd(out: str, keys_dir: str, key_path: str | None, threads: int, timeout: float, force: bool,
             node_impl: str | None, node_impl_kwargs: str, attest: str | None, commit: bool, **kw: Any) -> None:
    """Run one node of a split-learning pipeline (started by torchrun or `pol split train`)."""
    import torch

    from pol.split.comm import init_group

    torch.set_num_threads(max(1, threads))
    config = make_config(**kw)
    rank, world, device = init_group(timeout)
    try:
        impl_kwargs = json.loads(node_impl_kwargs)
    except ValueError as exc:
        raise InputError(f"--node-impl-kwargs is not JSON: {exc}") from None
    runtime = load_runtime_class(node_impl)(config, rank=rank, world=world, device=device, out_dir=out,
                                            keys_dir=keys_dir, key_path=key_path.replace("{rank}", str(rank))
                                            if key_path else None, force=force, attest=attest,
                                            commit=commit, **impl_kwargs)
    runtime.setup()
    result = runtime.train()
    import torch.distributed as dist

    dist.barrier()
    print(RESULT_PREFIX + json.dumps(asdict(result)), flush=True)
    dist.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    rank = os.environ.get("RANK", "?")
    code = 0
    try:
        node_cmd.main(args=argv, prog_name="python -m pol.split.node", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        code = 2
    except InputError as exc:
        print(f"pol split node {rank}: error: {exc}", file=sys.stderr, flush=True)
        code = exc.exit_code
    except PolError as exc:
        print(f"pol split node {rank}: error: {exc}", file=sys.stderr, flush=True)
        code = 1
    except Exception as exc:  # a peer that went away surfaces here as a torch/gloo error
        if os.environ.get("POL_DEBUG") == "1":
            import traceback

            traceback.print_exc()
        print(f"pol split node {rank}: stopped: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}",
              file=sys.stderr, flush=True)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # never block in process-group teardown after a failure


if __name__ == "__main__":
    # Run inside the importable module, so that NodeRuntime subclasses (--node-impl) see one class.
    import pol.split.node as _node

    _node.main()
