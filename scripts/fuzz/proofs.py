"""Malformed proofs: bit flips, truncation, HDF5-level edits, plan edits, and forged proofs
signed by a key the verifier trusts (so the expensive code behind the signature checks runs)."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from scripts.fuzz import h5edit as E
from scripts.fuzz.corpus import Corpus
from scripts.fuzz.runner import ANY, CLASSIFY, ERROR, REJECT, Case

IN = "in.pol.h5"
# Datasets whose layout is fixed (docs/FORMAT.md): any change of dtype is refused (exit 2).
FIXED = {"plan": "uint8", "signer_public_key": "uint8", "signatures/plan": "uint8", "signatures/final": "uint8",
         "indices": "int64", "chain/digests": "uint8", "chain/state_digests": "uint8", "chain/steps": "int64",
         "steps/state_digests": "uint8", "checkpoints/000000/index": "uint8", "checkpoints/000001/deltas": "uint8",
         "checkpoints/000002/plain": "uint8"}
RAW_TENSORS = {"checkpoints/000001/model/fc1.weight": "float32",
               "checkpoints/000002/optim/state/fc2.bias/momentum_buffer": "float32",
               "checkpoints/000000/optim/lr": "float64", "checkpoints/000002/rng/torch_cpu": "uint8",
               "checkpoints/000001/meta/step": "int64"}
GROUPS = ("signatures", "chain", "checkpoints", "checkpoints/000001", "final", "steps")
ROOT_ATTRS = ("format", "format_version", "mode", "codec")
FINAL_ATTRS = ("chain_head", "final_weights_digest", "num_checkpoints", "num_steps", "finished_at")
CKPT_ATTRS = ("step", "keyframe")
# Commands that must refuse what the reader refuses (the crash in the issue killed all of them).
READERS: list[Callable[[Corpus, str], list[str]]] = [
    lambda c, p: c.verify_args(p),
    lambda c, p: ["inspect", p, "--json"],
    lambda c, p: ["export", p, "--out", "out.safetensors"],
    lambda c, p: ["card", "--proof", p],
    lambda c, p: ["challenge", p, "--out", "c.json", "--seed", "0", "--json"],
]


def edited(origin: Path, edit: Callable[[Any, str, Path], None], path: str) -> Callable[[Path], None]:
    def build(case_dir: Path) -> None:
        import h5py

        target = case_dir / IN
        shutil.copy(origin, target)
        with h5py.File(target, "r+") as f:
            edit(f, path, case_dir)
    return build


def _case(c: Corpus, family: str, name: str, origin: Path, edit: Any, path: str, expect: str,
          reader: int = 0) -> Case:
    argv = READERS[reader](c, IN)
    return Case("proof", family, name, argv, expect if reader == 0 else (ANY if expect in (REJECT, CLASSIFY) else expect),
                edited(origin, edit, path), IN, origin, json_stdout=reader in (0, 1, 4))


def structural_cases(c: Corpus, rng: random.Random) -> Iterator[Case]:
    """Every HDF5-level family over the datasets, attributes and groups of the three proofs."""
    full, raw = c.full, c.raw
    # Which command reads each structural case: round-robin, so each family reaches every reader.
    turn = iter(range(1 << 30))

    def reader() -> int:
        return next(turn) % len(READERS)

    for path, own in FIXED.items():
        for dt in E.NUMERIC_DTYPES + E.SPECIAL_DTYPES:
            if dt == own:
                continue
            yield _case(c, "dtype", f"{path}:{dt}", full, E.change_dtype(dt), path, ERROR, reader())
        for how in E.SHAPES:
            yield _case(c, "shape", f"{path}:{how}", full, E.change_shape(how), path, REJECT)
        for how in E.STORAGE_SAME:
            yield _case(c, "storage", f"{path}:{how}", full, E.storage(how), path, CLASSIFY)
        for how in E.STORAGE_REFUSED:
            yield _case(c, "storage", f"{path}:{how}", full, E.storage(how), path, ERROR, reader())
        for how in E.LINKS:
            other = "chain/digests" if path.startswith(("chain", "steps")) else "signer_public_key"
            if other == path:  # an alias of itself cannot be built (the name is gone once deleted)
                other = "chain/state_digests" if path == "chain/digests" else "plan"
            expect = REJECT if how == "hard-alias" else ERROR
            yield _case(c, "link", f"{path}:{how}", full, E.link(how, other), path, expect, reader())
        for how in E.VIRTUAL:
            yield _case(c, "virtual", f"{path}:{how}", full, E.virtual(how), path, ERROR, reader())
        for how in E.EXTERNAL:
            yield _case(c, "external", f"{path}:{how}", full, E.external_storage(how), path, ERROR, reader())
        yield _case(c, "delete", f"{path}:delete", full, E.delete, path, REJECT, reader())
    for path, own in RAW_TENSORS.items():
        for dt in ("float32", "float64", "int32", "int64", "float16", ">f4", "compound", "vlen-str", "bool"):
            if dt == own:
                continue
            expect = ERROR if dt in (">f4", "compound", "vlen-str") else REJECT
            yield _case(c, "dtype", f"raw:{path}:{dt}", raw, E.change_dtype(dt), path, expect)
        for how in E.SHAPES:
            yield _case(c, "shape", f"raw:{path}:{how}", raw, E.change_shape(how), path, REJECT)
        for how in ("vds-self", "vds-other-file"):
            yield _case(c, "virtual", f"raw:{path}:{how}", raw, E.virtual(how), path, ERROR, reader())
        for how in ("external-hdf5", "soft-to-sibling"):
            yield _case(c, "link", f"raw:{path}:{how}", raw, E.link(how, "checkpoints/000000/optim/lr"), path, ERROR)
        yield _case(c, "attr", f"raw:{path}:attr", raw, E.set_attr("note", 1), path, ERROR)
    for name, value in E.ATTR_VALUES.items():
        for attr in ROOT_ATTRS:
            yield _case(c, "attr", f"/@{attr}={name}", full, E.set_attr(attr, value), "/", _attr_expect(attr, name),
                        reader())
        for attr in FINAL_ATTRS:
            yield _case(c, "attr", f"/final@{attr}={name}", full, E.set_attr(attr, value), "final",
                        _attr_expect(attr, name), reader())
        for attr in CKPT_ATTRS:
            yield _case(c, "attr", f"/checkpoints/000001@{attr}={name}", full, E.set_attr(attr, value),
                        "checkpoints/000001", _attr_expect(attr, name), reader())
    same_type = {("format_version", 2), ("format_version", 4), ("mode", "compact"), ("codec", "raw"),
                 ("format", "proof-of-learning-x")}
    for attr, value in sorted(same_type, key=str):
        yield _case(c, "attr", f"/@{attr}={value!r}", full, E.set_attr(attr, value), "/", REJECT, reader())
    for attr, value in (("num_checkpoints", 5), ("num_steps", 7), ("chain_head", "0" * 64),
                        ("final_weights_digest", "f" * 64)):
        yield _case(c, "attr", f"/final@{attr}={value!r}", full, E.set_attr(attr, value), "final", REJECT)
    for attr, value in (("step", 5), ("keyframe", True), ("base", "seeded-model"), ("optimizer_state_digest", "0" * 64)):
        yield _case(c, "attr", f"/checkpoints/000001@{attr}={value!r}", full, E.set_attr(attr, value),
                    "checkpoints/000001", REJECT)
    yield _case(c, "attr", "/checkpoints/000000@keyframe=False", full, E.set_attr("keyframe", False),
                "checkpoints/000000", REJECT)
    for attr in ROOT_ATTRS:
        yield _case(c, "attr", f"/@{attr}:delete", full, E.delete_attr(attr), "/", ERROR, reader())
    for attr in FINAL_ATTRS:
        yield _case(c, "attr", f"/final@{attr}:delete", full, E.delete_attr(attr), "final", ERROR, reader())
    for group in ("", *GROUPS):
        yield _case(c, "member", f"/{group}:extra-group", full, E.add_member("group"), group, ERROR, reader())
        yield _case(c, "member", f"/{group}:extra-dataset", full, E.add_member("dataset"), group, ERROR, reader())
        yield _case(c, "attr", f"/{group}:unknown-attr", full, E.set_attr("zz_note", 1), group or "/", ERROR, reader())
    for group in GROUPS:
        yield _case(c, "delete", f"/{group}:delete", full, E.delete, group, REJECT, reader())
        yield _case(c, "link", f"/{group}:hard-cycle", full, E.link("hard-cycle"), f"{group}/loop", ERROR, reader())
        yield _case(c, "link", f"/{group}:soft-cycle", full, E.link("soft-cycle"), f"{group}/loop", ERROR, reader())
    for where, depth in (("", 40), ("checkpoints/000001", 20), ("zk_like", 0)):
        if where == "zk_like":
            yield _case(c, "nesting", "/zk:deep", full, _zk_nest, "", ERROR, reader())
            continue
        yield _case(c, "nesting", f"/{where}:depth{depth}", full, E.nest(depth), where, ERROR, reader())
    yield _case(c, "nesting", "raw /checkpoints/000001:depth20", raw, E.nest(20), "checkpoints/000001", ERROR)
    yield _case(c, "flood", "/:30000-groups", full, E.flood_groups(30_000), "", ERROR, reader())
    yield _case(c, "flood", "/checkpoints:50001-checkpoints", full, E.flood_groups(50_001, "{:06d}"),
                "checkpoints", ERROR, reader())
    yield _case(c, "flood", "/:100-attrs", full, E.flood_attrs(100), "", ERROR, reader())
    yield _case(c, "flood", "/zk:30000-groups", full, _zk_flood, "", ERROR, reader())


_ATTR_TYPES = {"format": str, "mode": str, "codec": str, "chain_head": str, "final_weights_digest": str,
               "finished_at": str, "format_version": int, "num_checkpoints": int, "num_steps": int, "step": int,
               "keyframe": bool}
_VALUE_TYPES = {"string-digit": str, "empty-string": str, "long-string": str, "control-chars": str, "int8": int,
                "int-max": int, "negative": int, "bool": bool}


def _attr_expect(attr: str, value_name: str) -> str:
    """A value of another type than the attribute's is refused (exit 2); one of its type may be
    accepted only where it leaves the proof's content unchanged, or the attribute is unsigned."""
    return CLASSIFY if _VALUE_TYPES.get(value_name) is _ATTR_TYPES[attr] else ERROR


def _zk_nest(f: Any, path: str, case_dir: Path) -> None:
    E.nest(30)(f, "", case_dir)
    f.move("x", "zk")


def _zk_flood(f: Any, path: str, case_dir: Path) -> None:
    g = f.create_group("zk")
    for i in range(30_000):
        g.create_group(f"m{i}")


# -- plan edits ------------------------------------------------------------------------------------
DEEP = "__deep_nesting__"  # replaced by 5,000 nested lists when the plan is encoded


def plan_bytes(plan: dict[str, Any]) -> bytes:
    """Canonical JSON of an edited plan (with :data:`DEEP` spliced in as raw nesting)."""
    from pol.hashing import canonical_json

    raw = canonical_json(plan)
    return raw.replace(f'"{DEEP}"'.encode(), b"[" * 5000 + b"0" + b"]" * 5000)


PLAN_EDITS: dict[str, Callable[[dict[str, Any]], None]] = {
    "num_steps=10**12": lambda p: p.__setitem__("num_steps", 10**12),
    "num_steps=0": lambda p: p.__setitem__("num_steps", 0),
    "every=0": lambda p: p.__setitem__("every", 0),
    "every=1": lambda p: p.__setitem__("every", 1),
    "batch_size=10**6": lambda p: p.__setitem__("batch_size", 10**6),
    "seed=2**64": lambda p: p.__setitem__("seed", 2**64),
    "seed=1.5": lambda p: p.__setitem__("seed", 1.5),
    "threads=100000": lambda p: p["environment"].__setitem__("threads", 100_000),
    "threads=-1": lambda p: p["environment"].__setitem__("threads", -1),
    "threads=str": lambda p: p["environment"].__setitem__("threads", "8"),
    "num_samples=10**8": lambda p: p["data"].__setitem__("num_samples", 10**8),
    "milestones=4M": lambda p: p.__setitem__("lr_schedule", {"kind": "step", "lr": 0.1, "milestones": list(range(4_000_000)),
                                                             "gamma": 0.5}),
    "milestones=10000": lambda p: p.__setitem__("lr_schedule", {"kind": "step", "lr": 0.1,
                                                                "milestones": list(range(10_000)), "gamma": 0.5}),
    "table=2M": lambda p: p.__setitem__("lr_schedule", {"kind": "table", "values": [0.05] * 2_000_000}),
    "exponential-gamma=1e308": lambda p: p.__setitem__("lr_schedule", {"kind": "exponential", "lr": 0.05, "gamma": 1e308}),
    "cosine-total=10**15": lambda p: p.__setitem__("lr_schedule", {"kind": "cosine", "lr": 0.05, "total_steps": 10**15}),
    "model-kwargs-deep": lambda p: p["model"].__setitem__("kwargs", {"hidden": DEEP}),
    "model-kwargs-huge": lambda p: p["model"].__setitem__("kwargs", {"hidden": 10**7}),
    "model-kwargs-negative": lambda p: p["model"].__setitem__("kwargs", {"hidden": -1}),
    "model-spec-os-system": lambda p: p["model"].__setitem__("spec", "os:system"),
    "data-spec-synthetic-huge": lambda p: p["data"].update({"spec": "synthetic-resnet20",
                                                           "kwargs": {"num_samples": 10**8, "heldout": 1}}),
    "optimizer-momentum-huge": lambda p: p["optimizer"]["hparams"].__setitem__("momentum", 1e308),
    "optimizer-type-LBFGS": lambda p: p["optimizer"].__setitem__("type", "LBFGS"),
    "loss-spec-user": lambda p: p["step"]["loss"].update({"spec": "os:system"}) or p["step"]["loss"].pop("name"),
    "accumulation=4096": lambda p: p["step"].__setitem__("accumulation", 4096),
    "fields=flood": lambda p: p["data"].__setitem__("fields", ["f"] * 100_000),
    "created_at-control-chars": lambda p: p.__setitem__("created_at", "\x1b]0;pwned\x07"),
    "environment-flood": lambda p: p["environment"].update({f"k{i}": i for i in range(100_000)}),
    "version=1": lambda p: p.__setitem__("version", 1),
    "unknown-field": lambda p: p.__setitem__("zz", 1),
}


def _plan_of(reader_path: Path) -> dict[str, Any]:
    from pol.proof_file import ProofReader

    with ProofReader(reader_path) as r:
        return json.loads(r.plan_bytes)


def plan_cases(c: Corpus, forged: "ForgeSource") -> Iterator[Case]:
    """Plan edits written over the signed plan (the signature breaks: reject), and the same edits
    in proofs forged under the forger's key, verified with that key trusted (the checks behind the
    signatures run, with a plan that asks for absurd resources)."""

    base = forged.plan
    for name, edit in PLAN_EDITS.items():
        plan = json.loads(json.dumps(base))
        edit(plan)

        def rewrite(f: Any, path: str, case_dir: Path, plan: dict[str, Any] = plan) -> None:
            E.recreate(f, "plan", np.frombuffer(plan_bytes(plan), np.uint8))
        yield _case(c, "plan", f"unsigned:{name}", c.full, rewrite, "plan", REJECT)
        yield Case("proof", "forged", f"signed:{name}", c.verify_args(IN, c.forger_pub), REJECT,
                   forged.builder(plan), IN, None, json_stdout=True)
        if name in ("num_steps=10**12", "milestones=10000", "table=2M", "every=1", "threads=100000"):
            for k in (1, 2, 4):
                yield Case("proof", "forged", f"signed:{name}:{READERS[k](c, IN)[0]}", READERS[k](c, IN), ANY,
                           forged.builder(plan), IN, None, json_stdout=k in (1, 4))
    for name, raw in (("not-json", b"{not json"), ("deep-json", b"[" * 100_000 + b"]" * 100_000),
                      ("nan", b'{"version":2,"seed":NaN}'), ("16MB-spaces", b" " * (1 << 24)),
                      ("utf16", json.dumps(base).encode("utf-16")), ("empty", b"")):
        yield _case(c, "plan", f"bytes:{name}", c.full,
                    lambda f, path, case_dir, raw=raw: E.recreate(f, "plan", np.frombuffer(raw, np.uint8)), "plan", REJECT)
    for name, steps in (("steps[1]=10**15", [0, 10**15, 8]), ("steps-decreasing", [0, 8, 4]), ("steps-negative", [0, -4, 8]),
                        ("steps[2]=2**62", [0, 4, 2**62])):
        yield Case("proof", "forged", f"chain:{name}", c.verify_args(IN, c.forger_pub), REJECT,
                   forged.builder(base, chain_steps=steps), IN, None, json_stdout=True)
        yield Case("proof", "forged", f"chain:{name}:challenge", READERS[4](c, IN), ANY,
                   forged.builder(base, chain_steps=steps), IN, None, json_stdout=True)
        yield Case("proof", "forged", f"chain:{name}:inspect", READERS[1](c, IN), ANY,
                   forged.builder(base, chain_steps=steps), IN, None, json_stdout=True)


class ForgeSource:
    """Re-signs the honest run under the forger's key with another plan: the plan, its signature,
    the embedded public key, the chain (its genesis covers the plan digest) and the final signature
    are rewritten, so every signature and chain check passes under the forger's trusted key."""

    def __init__(self, c: Corpus):
        self.plan = _plan_of(c.full)
        self.origin = c.full
        self.key_path = c.forger_key

    def builder(self, plan_dict: dict[str, Any], chain_steps: list[int] | None = None) -> Callable[[Path], None]:
        def build(case_dir: Path) -> None:
            from pol.keys import load_signing_key

            key = load_signing_key(self.key_path)
            target = case_dir / IN
            shutil.copy(self.origin, target)
            resign(target, dict(plan_dict, signer=bytes(key.verify_key).hex()), key, chain_steps)
        return build


def resign(path: Path, plan: dict[str, Any], key: Any, chain_steps: list[int] | None = None) -> None:
    """Rewrite a proof's plan (and ``/chain/steps``) and re-sign everything under ``key``: the plan,
    the embedded public key, the chain (its genesis covers the plan digest), the final signature."""
    import hashlib

    import h5py

    from pol import chain
    from pol.assemble import FINAL_DOMAIN, PLAN_DOMAIN
    from pol.keys import sign

    raw = plan_bytes(plan)
    digest = hashlib.sha256(b"pol-plan-v1" + raw).digest()
    with h5py.File(path, "r+") as f:
        E.recreate(f, "plan", np.frombuffer(raw, np.uint8))
        E.recreate(f, "signer_public_key", np.frombuffer(bytes(key.verify_key), np.uint8))
        E.recreate(f, "signatures/plan", np.frombuffer(sign(key, PLAN_DOMAIN, raw), np.uint8))
        states = [bytes(r) for r in f["chain/state_digests"][()]]
        indices = f["indices"][()]
        per_step = [bytes(r) for r in f["steps/state_digests"][()]] if "steps" in f else None
        honest_steps = [int(s) for s in f["chain/steps"][()]]
        head = chain.genesis(digest, states[0])
        heads = [head]
        for i in range(1, len(states)):
            a, b = honest_steps[i - 1], honest_steps[i]
            head = chain.link(head, states[i], indices[a:b], per_step[a + 1:b] if per_step else [])
            heads.append(head)
        E.recreate(f, "chain/digests", np.frombuffer(b"".join(heads), np.uint8).reshape(-1, 32), maxshape=(None, 32),
                   chunks=True)
        if chain_steps is not None:
            E.recreate(f, "chain/steps", np.asarray(chain_steps, np.int64), maxshape=(None,), chunks=True)
        fin = f["final"].attrs
        fwd = bytes.fromhex(str(fin["final_weights_digest"]))
        message = chain.final_message(digest, head, fwd, int(fin["num_checkpoints"]), int(fin["num_steps"]))
        fin["chain_head"] = head.hex()
        E.recreate(f, "signatures/final", np.frombuffer(sign(key, FINAL_DOMAIN, message), np.uint8))


# -- bytes ------------------------------------------------------------------------------------------
def bitflip_cases(c: Corpus, rng: random.Random, count: int) -> Iterator[Case]:
    origins = [c.full, c.raw, c.compact]
    for i in range(count):
        origin = origins[i % len(origins)]
        size = origin.stat().st_size
        pos, bit = rng.randrange(size), rng.randrange(8)

        def build(case_dir: Path, origin: Path = origin, pos: int = pos, bit: int = bit) -> None:
            data = bytearray(origin.read_bytes())
            data[pos] ^= 1 << bit
            (case_dir / IN).write_bytes(bytes(data))
        yield Case("proof", "bitflip", f"{origin.name}@{pos}.{bit}", c.verify_args(IN), CLASSIFY, build, IN, origin,
                   json_stdout=True)


def truncation_cases(c: Corpus, rng: random.Random, count: int) -> Iterator[Case]:
    origins = [c.full, c.raw, c.compact]
    fixed = [0, 1, 8, 96, 512, 2048]
    for i in range(count):
        origin = origins[i % len(origins)]
        size = origin.stat().st_size
        cut = fixed[i] if i < len(fixed) else rng.randrange(1, size)

        def build(case_dir: Path, origin: Path = origin, cut: int = cut) -> None:
            (case_dir / IN).write_bytes(origin.read_bytes()[:cut])
        reader = READERS[i % len(READERS)]
        yield Case("proof", "truncate", f"{origin.name}[:{cut}]", reader(c, IN), ERROR,
                   build, IN, origin, json_stdout=i % len(READERS) in (0, 1, 4))
