"""Published weights against a proof: are these the weights that training produced?

``pol verify model.safetensors --proof run.pol.h5 --key trainer.pub`` runs two things and
merges them into one :class:`~verifier.report.Report`:

1. ``weights_match``: the file's tensors equal the model part of the proof's final checkpoint,
   bit for bit, or, under an explicit ``--allow-cast bf16|fp16`` rule that the report names,
   the proof's floating-point weights cast (round-to-nearest-even) to that dtype equal the
   file's. Name prefixes added by wrappers (``module.`` from DataParallel, ``_orig_mod.`` from
   torch.compile) and tied tensors (one name in the file, two in the state_dict) are resolved
   and reported in the check's detail and in ``weights_names``, never ignored.
2. the whole proof, by :func:`verifier.api.verify` (signatures, chain, plan, data, init, replay).

Exit 0 only when both hold under a trusted key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from pol.errors import InputError
from pol.hashing import dtype_name
from pol.keys import TrustedKey
from pol.proof_file import ProofReader
from pol.publish import final_weights
from pol.weights_io import CAST_RULES, WeightsFile, cast_array, load_weights
from verifier.report import Report

WRAPPER_PREFIXES = ("module.", "_orig_mod.")

__all__ = ["verify_published", "verify_loaded", "match_weights", "WeightsMatch", "normalize_cast"]


@dataclass
class WeightsMatch:
    passed: bool
    figure: str
    detail: str
    names: dict[str, Any] = field(default_factory=dict)


def normalize_cast(rule: str | None) -> str | None:
    if rule is None:
        return None
    if rule in CAST_RULES:
        return CAST_RULES[rule]
    if rule in CAST_RULES.values():
        return rule
    raise InputError(f"unknown cast rule {rule!r}; expected one of {', '.join(CAST_RULES)}")


def _strip_wrappers(names: list[str], reference: list[str]) -> list[str]:
    """Prefixes every name carries but the reference names do not (applied in order)."""
    stripped: list[str] = []
    current = list(names)
    changed = True
    while changed and current:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(n.startswith(prefix) for n in current) and not all(r.startswith(prefix) for r in reference):
                current = [n[len(prefix):] for n in current]
                stripped.append(prefix)
                changed = True
    return stripped


def _apply(name: str, prefixes: list[str]) -> str:
    for prefix in prefixes:
        name = name[len(prefix):] if name.startswith(prefix) else name
    return name


def match_weights(wf: WeightsFile, expected: dict[str, np.ndarray], cast: str | None = None) -> WeightsMatch:
    """Compare a loaded weights file with the proof's final model weights."""
    cast = normalize_cast(cast)
    notes = list(wf.notes)
    info: dict[str, Any] = {"file_tensors": len(wf.tensors), "proof_tensors": len(expected)}
    file_prefixes = _strip_wrappers(list(wf.tensors), list(expected))
    proof_prefixes = _strip_wrappers(list(expected), list(wf.tensors))
    if file_prefixes:
        info["prefix_stripped_from_file"] = file_prefixes
        notes.append(f"stripped wrapper prefix {'+'.join(file_prefixes)!r} from every name in the file")
    if proof_prefixes:
        info["prefix_stripped_from_proof"] = proof_prefixes
        notes.append(f"stripped wrapper prefix {'+'.join(proof_prefixes)!r} from every name in the proof")
    got = {_apply(k, file_prefixes): (v, wf.dtypes[k]) for k, v in wf.tensors.items()}
    want = {_apply(k, proof_prefixes): v for k, v in expected.items()}
    declared = {_apply(a, file_prefixes): _apply(b, file_prefixes) for a, b in wf.ties.items()}
    unknown = sorted(set(declared) - set(want))
    if unknown:  # metadata about tensors this model does not have: refused, never ignored
        from pol.errors import WeightsFileError

        raise WeightsFileError(f"{wf.path}: metadata pol.tied declares aliases the proof's model does not have: "
                               f"{[u[:60] for u in unknown[:4]]}")
    if declared:
        info["ties_in_file"] = declared

    # names of the proof the file does not hold: tied aliases, or missing
    source: dict[str, str] = {}
    tied: dict[str, str] = {}
    missing: list[str] = []
    for name in sorted(want):
        if name in got:
            source[name] = name
            continue
        kept = declared.get(name)
        if kept is not None and kept in got:
            source[name], tied[name] = kept, kept
            continue
        twin = next((other for other in sorted(want) if other != name and other in got
                     and _same(want[other], want[name])), None)
        if twin is not None:
            source[name], tied[name] = twin, twin
            continue
        missing.append(name)
    if tied:
        info["tied"] = tied
        notes.append("tied tensors held once in the file: " + ", ".join(f"{a} = {b}" for a, b in sorted(tied.items())))
    extra = sorted(set(got) - set(want))
    if missing:
        info["missing_from_file"] = missing
    if extra:
        info["not_in_proof"] = extra

    mismatched: list[str] = []
    cast_names: list[str] = []
    for name in sorted(source):
        arr, file_dtype = got[source[name]]
        ref = np.asarray(want[name])
        ref_dtype = dtype_name(ref)
        if tuple(arr.shape) != tuple(ref.shape):
            mismatched.append(f"{name}: shape {tuple(arr.shape)} in the file, {tuple(ref.shape)} in the proof")
            continue
        if file_dtype == ref_dtype:
            if not _same(arr, ref):
                mismatched.append(f"{name}: {_diff(arr, ref)}")
            continue
        if cast is not None and file_dtype == cast and ref.dtype.kind == "f":
            converted, _ = cast_array(ref, cast)
            if np.array_equal(converted.view(np.uint8), np.ascontiguousarray(arr).view(np.uint8)):
                cast_names.append(name)
            else:
                diff = int(np.count_nonzero(converted != arr))
                mismatched.append(f"{name}: {diff} value(s) differ from the proof's weights cast to {cast}")
            continue
        hint = ""
        if cast is None and file_dtype in CAST_RULES.values():
            hint = f" (pass --allow-cast {'bf16' if file_dtype == 'bfloat16' else 'fp16'} to accept a cast copy)"
        mismatched.append(f"{name}: dtype {file_dtype} in the file, {ref_dtype} in the proof{hint}")
    if cast_names:
        info["cast"] = {"rule": f"proof {_float_names(want, cast_names)} weights cast to {cast} "
                                "(round-to-nearest-even) equal the file's", "tensors": len(cast_names)}
        notes.append(f"cast rule: {len(cast_names)} tensor(s) equal the proof's weights cast to {cast}")
    if mismatched:
        info["mismatched"] = mismatched
    info["file_metadata"] = {k: v for k, v in wf.metadata.items() if k.startswith("pol.")}

    problems = []
    if missing:
        problems.append(f"{len(missing)} tensor(s) of the proof missing from the file: {', '.join(missing[:4])}")
    if extra:
        problems.append(f"{len(extra)} tensor(s) in the file not in the proof: {', '.join(extra[:4])}")
    if mismatched:
        problems.append(f"{len(mismatched)} tensor(s) differ: " + "; ".join(mismatched[:4]))
    passed = not problems and bool(want)
    if not want:
        problems.append("the proof's final checkpoint holds no model weights")
    if passed:
        kind = f"{len(cast_names)} under the {cast} cast rule" if cast_names else "bitwise"
        figure = f"{len(want)}/{len(want)} tensors equal ({kind})"
    else:
        figure = f"{len(want) - len(missing) - len(mismatched)}/{len(want)} tensors equal"
    resolved = [f"prefix {'+'.join(file_prefixes + proof_prefixes)!r} stripped"] if file_prefixes or proof_prefixes else []
    resolved += [f"{len(tied)} tied alias(es)"] if tied else []
    if resolved:
        figure += " [" + "; ".join(resolved) + "]"
    return WeightsMatch(passed, figure, "; ".join(problems + notes), info)


def _float_names(want: dict[str, np.ndarray], names: list[str]) -> str:
    kinds = sorted({dtype_name(np.asarray(want[n])) for n in names})
    return "/".join(kinds)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(
        np.ascontiguousarray(a).view(np.uint8), np.ascontiguousarray(b).view(np.uint8))


def _diff(a: np.ndarray, b: np.ndarray) -> str:
    a, b = np.asarray(a), np.asarray(b)
    if a.size == 0:
        return "differ"
    ab = np.ascontiguousarray(a).view(np.uint8).reshape(a.size, -1)
    bb = np.ascontiguousarray(b).view(np.uint8).reshape(b.size, -1)
    differ = int((ab != bb).any(axis=1).sum())
    if a.dtype.kind == "f":
        with np.errstate(invalid="ignore", over="ignore"):
            worst = float(np.nanmax(np.abs(a.astype(np.float64) - b.astype(np.float64))))
        return f"{differ} of {a.size} value(s) differ (max abs difference {worst:.3g})"
    return f"{differ} of {a.size} value(s) differ"


def verify_loaded(wf: WeightsFile, proof: str | os.PathLike[str], *, public_key: str | TrustedKey | None = None,
                  options: Any = None, allow_cast: str | None = None,
                  progress: Callable[[str, int], Any] | None = None) -> Report:
    """Judge an already loaded weights file against ``proof``; see the module docstring."""
    from verifier.api import verify_open

    cast = normalize_cast(allow_cast)
    with ProofReader(proof, model_spec=getattr(options, "model", None)) as reader:
        expected = final_weights(reader)
        signed = reader.final["final_weights_digest"].hex() if reader.final else None
        match = match_weights(wf, expected, cast)
        if signed is not None and wf.metadata.get("pol.final_weights_digest") not in (None, signed):
            match.detail = "; ".join(filter(None, [match.detail, "the file's (unsigned) metadata names another "
                                                   "proof's final weights; the tensors decide"]))
        proof_report = verify_open(reader, public_key=public_key, options=options, progress=progress)
    report = Report(subject=str(wf.path))
    report.add("weights_match", match.passed, match.figure, match.detail)
    report.extend(proof_report.checks)
    report.info.update(proof_report.info)
    report.info.update({
        "weights_file": str(wf.path),
        "weights_format": wf.format,
        "weights_digest": wf.digest().hex(),
        "proof": str(proof),
        "proof_final_weights_digest": signed,
        "cast_rule": match.names.get("cast", {}).get("rule") if cast else None,
        "weights_names": match.names,
    })
    return report


def verify_published(weights: str | os.PathLike[str], proof: str | os.PathLike[str] | None, *,
                     public_key: str | TrustedKey | None = None, options: Any = None,
                     allow_cast: str | None = None, allow_pickle: bool = False,
                     progress: Callable[[str, int], Any] | None = None) -> Report:
    """Verify that ``weights`` are the final weights of ``proof`` and that the proof holds."""
    if proof is None:
        raise InputError(f"{weights} is a weights file: name the proof it came from with --proof run.pol.h5")
    normalize_cast(allow_cast)
    wf = load_weights(weights, allow_pickle=allow_pickle)
    return verify_loaded(wf, proof, public_key=public_key, options=options, allow_cast=allow_cast, progress=progress)
