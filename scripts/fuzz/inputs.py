"""Malformed inputs other than proof files: safetensors, key files, challenge and response files,
``/zk`` sections and simulated-TEE evidence (quote, policy and collateral JSON)."""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any



from scripts.fuzz import h5edit as E
from scripts.fuzz.corpus import Corpus
from scripts.fuzz.proofs import edited
from scripts.fuzz.runner import ACCEPT, CLASSIFY, ERROR, REJECT, Case


def _write(name: str, data: bytes | Callable[[Path], None], mode: int | None = None) -> Callable[[Path], None]:
    def build(case_dir: Path) -> None:
        target = case_dir / name
        if callable(data):
            data(target)
        else:
            target.write_bytes(data)
        if mode is not None and target.exists() and not target.is_symlink():
            os.chmod(target, mode)
    return build


def _fifo(target: Path) -> None:
    os.mkfifo(target)


def _symlink_to(dest: str) -> Callable[[Path], None]:
    return lambda target: os.symlink(dest, target)


def _self_link(target: Path) -> None:
    os.symlink(target.name, target)


def _directory(target: Path) -> None:
    target.mkdir()


def _flip(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    b = bytearray(data)
    pos, bit = rng.randrange(len(b)), rng.randrange(8)
    b[pos] ^= 1 << bit
    return bytes(b), f"@{pos}.{bit}"


# Hostile files every small-file reader meets (key, challenge, policy, collateral, quote).
def _hostile(text: bytes) -> dict[str, bytes | Callable[[Path], None]]:
    return {
        "empty": b"", "garbage": bytes(range(256)) * 4, "50MB": b"a" * (50 << 20), "fifo": _fifo,
        "dev-zero": _symlink_to("/dev/zero"), "dev-urandom": _symlink_to("/dev/urandom"), "directory": _directory,
        "symlink-loop": _self_link, "nul-bytes": text[: len(text) // 2] + b"\0" + text[len(text) // 2:], "utf16": text.decode("latin-1").encode("utf-16"),
        "bom": b"\xef\xbb\xbf" + text, "control-chars": b"\x1b]0;pwned\x07" + text,
    }


# -- safetensors ----------------------------------------------------------------------------------
def _st_parts(path: Path) -> tuple[dict[str, Any], bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _st_file(header: Any, body: bytes, raw_header: bytes | None = None) -> bytes:
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + body


def _overlap(h: dict[str, Any]) -> None:
    """The smallest tensor's bytes moved to start where another tensor's do: two ranges overlap.
    (Giving tensors of the first one's shape its offsets was a no-op when no other tensor has that
    shape: the file stayed honest.)"""
    entries = sorted((e["data_offsets"][1] - e["data_offsets"][0], k) for k, e in h.items() if k != "__metadata__")
    (size, small), big = entries[0], entries[-1][1]
    start = h[big]["data_offsets"][0]
    h[small]["data_offsets"] = [start, start + size]


def safetensors_cases(c: Corpus, rng: random.Random, flips: int) -> Iterator[Case]:
    header, body = _st_parts(c.weights)
    first = next(k for k in header if k != "__metadata__")
    verify = ["verify", "w.safetensors", "--proof", str(c.full), "--key", str(c.pub), "--segments", "1", "--seed", "0",
              "--json"]

    def variant(edit: Callable[[dict[str, Any]], Any]) -> bytes:
        h = json.loads(json.dumps(header))
        edit(h)
        return _st_file(h, body)

    cases: dict[str, tuple[bytes | Callable[[Path], None], str]] = {
        "length-huge": (struct.pack("<Q", 2**63) + c.weights.read_bytes()[8:], ERROR),
        "length-past-end": (struct.pack("<Q", len(c.weights.read_bytes())) + c.weights.read_bytes()[8:], ERROR),
        "length-zero": (struct.pack("<Q", 0) + c.weights.read_bytes()[8:], ERROR),
        "seven-bytes": (b"\x01" * 7, ERROR),
        "header-not-json": (_st_file(None, body, b"{not json"), ERROR),
        "header-deep": (_st_file(None, body, b"[" * 200_000 + b"]" * 200_000), ERROR),
        "header-nan": (_st_file(None, body, json.dumps(header).replace("]", ", NaN]", 1).encode()), ERROR),
        "header-list": (_st_file([1, 2], body), ERROR),
        "header-60MB": (_st_file(None, body, json.dumps(header).encode() + b" " * (60 << 20)), ERROR),
        "header-duplicate-key": (_st_file(None, body, json.dumps(header)[:-1].encode() + b', "'
                                          + first.encode() + b'": ' + json.dumps(header[first]).encode() + b"}"), REJECT),
        "dtype-unknown": (variant(lambda h: h[first].__setitem__("dtype", "F8_E4M3")), ERROR),
        "dtype-int": (variant(lambda h: h[first].__setitem__("dtype", 7)), ERROR),
        "shape-negative": (variant(lambda h: h[first].__setitem__("shape", [-1, 64])), ERROR),
        "shape-huge": (variant(lambda h: h[first].__setitem__("shape", [2**47, 2**47])), ERROR),
        "shape-100-dims": (variant(lambda h: h[first].__setitem__("shape", [1] * 100)), ERROR),
        "shape-string": (variant(lambda h: h[first].__setitem__("shape", "64")), ERROR),
        "offsets-outside": (variant(lambda h: h[first].__setitem__("data_offsets", [0, 10**12])), ERROR),
        "offsets-reversed": (variant(lambda h: h[first].__setitem__("data_offsets", h[first]["data_offsets"][::-1])), ERROR),
        "offsets-float": (variant(lambda h: h[first].__setitem__("data_offsets", [0.0, 4.0])), ERROR),
        "overlap": (variant(_overlap), REJECT),
        "extra-field": (variant(lambda h: h[first].__setitem__("zz", 1)), ERROR),
        "metadata-not-strings": (variant(lambda h: h.__setitem__("__metadata__", {"a": 1})), ERROR),
        "metadata-tied-garbage": (variant(lambda h: h.setdefault("__metadata__", {}).__setitem__("pol.tied", "[")), ERROR),
        "metadata-tied-unknown": (variant(lambda h: h.setdefault("__metadata__", {}).__setitem__(
            "pol.tied", json.dumps({"zz": first}))), REJECT),
        "metadata-tied-cycle": (variant(lambda h: h.setdefault("__metadata__", {}).__setitem__(
            "pol.tied", json.dumps({first: first}))), REJECT),
        "metadata-control-chars": (variant(lambda h: h.setdefault("__metadata__", {}).__setitem__(
            "pol.proof", "\x1b]0;pwned\x07")), CLASSIFY),
        "name-control-chars": (variant(lambda h: h.__setitem__("\x1b[2Jevil", h.pop(first))), REJECT),
        "tensor-removed": (variant(lambda h: h.pop(first)), REJECT),
        "one-million-tensors": (_st_file({**{f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
                                             for i in range(1_000_001)}}, b""), ERROR),
        "empty-file": (b"", ERROR),
        "fifo": (_fifo, ERROR), "dev-zero": (_symlink_to("/dev/zero"), ERROR), "directory": (_directory, ERROR),
    }
    for name, (data, expect) in cases.items():
        yield Case("safetensors", "header", name, verify, expect, _write("w.safetensors", data), "w.safetensors",
                   c.weights, json_stdout=True)
        if expect == ERROR:
            yield Case("safetensors", "header", f"{name}:digest", ["digest", "w.safetensors", "--json"], ERROR,
                       _write("w.safetensors", data), json_stdout=True)
    raw = c.weights.read_bytes()
    for i in range(flips):
        data, where = _flip(raw, rng)
        yield Case("safetensors", "bitflip", where, verify, CLASSIFY, _write("w.safetensors", data), "w.safetensors",
                   c.weights, json_stdout=True)
    for cut in sorted({8, 64, len(raw) // 2, len(raw) - 1, rng.randrange(9, len(raw))}):
        yield Case("safetensors", "truncate", f"[:{cut}]", verify, ERROR, _write("w.safetensors", raw[:cut]), json_stdout=True)
    pickled = b"\x80\x04\x95" + os.urandom(64)
    yield Case("safetensors", "pickle", "refused-without-allow-pickle",
               ["verify", "w.pt", "--proof", str(c.full), "--key", str(c.pub), "--json"], ERROR, _write("w.pt", pickled),
               json_stdout=True)
    yield Case("safetensors", "pickle", "garbage-with-allow-pickle",
               ["verify", "w.pt", "--proof", str(c.full), "--key", str(c.pub), "--allow-pickle", "--json"], ERROR,
               _write("w.pt", pickled), json_stdout=True)


# -- key files ------------------------------------------------------------------------------------
def key_cases(c: Corpus, rng: random.Random, flips: int) -> Iterator[Case]:
    pub = c.pub.read_bytes()
    header, hexkey = pub.split(b"\n")[:2]
    verify = lambda name: ["verify", str(c.full), "--key", name, "--segments", "1", "--seed", "0", "--json"]  # noqa: E731
    variants: dict[str, bytes | Callable[[Path], None]] = {
        **_hostile(pub),
        "hex-with-spaces": header + b"\n" + b" ".join(hexkey[i:i + 2] for i in range(0, len(hexkey), 2)) + b"\n",
        "uppercase-hex": header + b"\n" + hexkey.upper() + b"\n",
        "crlf": pub.replace(b"\n", b"\r\n"), "no-newline": pub.rstrip(b"\n"), "extra-line": pub + b"extra\n",
        "vertical-tab": pub.replace(b"\n", b"\x0b", 1), "short-key": header + b"\n" + hexkey[:-2] + b"\n",
        "long-key": header + b"\n" + hexkey + b"00\n", "secret-key-file": c.key.read_bytes(),
        "other-signer": c.forger_pub.read_bytes(), "no-header": hexkey + b"\n", "non-ascii": header + b"\n\xc3\xa9\n",
        "long-line": header + b"\n" + b"0" * (10 << 20) + b"\n",
    }
    benign = {"crlf", "no-newline"}
    for name, data in variants.items():
        expect = CLASSIFY if name in benign else REJECT
        yield Case("key", "public", name, verify("t.pub"), expect, _write("t.pub", data), "t.pub", c.pub, json_stdout=True)
    for name in ("0" * 40, "f" * 39, "g" * 40, "\x1b[2J" + "0" * 36):
        yield Case("key", "fingerprint", repr(name), verify(name), REJECT, None, json_stdout=True)
    for i in range(flips):
        data, where = _flip(pub, rng)
        yield Case("key", "bitflip", where, verify("t.pub"), REJECT, _write("t.pub", data), json_stdout=True)
    secret = c.key.read_bytes()
    train = ["train", "--task", "digits-mlp", "--steps", "1", "--every", "1", "--out", "o.pol.h5", "--key", "t.key"]
    for name, data in {**_hostile(secret), "public-key-file": pub, "mode-0644": secret}.items():
        yield Case("key", "secret", name, train, ERROR, _write("t.key", data, 0o644 if name == "mode-0644" else 0o600))


# -- challenges and responses ---------------------------------------------------------------------
def challenge_cases(c: Corpus, rng: random.Random) -> Iterator[Case]:
    doc = json.loads(c.challenge.read_text())
    verify = ["verify", str(c.compact), "--key", str(c.pub), "--response", str(c.response), "--challenge", "c.json",
              "--segments", "1", "--seed", "0", "--json"]

    def variant(edit: Callable[[dict[str, Any]], Any]) -> bytes:
        d = json.loads(json.dumps(doc))
        edit(d)
        return json.dumps(d).encode()

    variants: dict[str, bytes | Callable[[Path], None]] = {
        **_hostile(c.challenge.read_bytes()),
        "not-json": b"{", "deep": b"[" * 200_000 + b"]" * 200_000, "top-list": b"[]", "nan": b'{"segments": [NaN]}',
        "segments-huge-int": variant(lambda d: d.__setitem__("segments", [10**30])),
        "segments-negative": variant(lambda d: d.__setitem__("segments", [-1])),
        "segments-float": variant(lambda d: d.__setitem__("segments", [0.5])),
        "segments-bool": variant(lambda d: d.__setitem__("segments", [True])),
        "segments-string": variant(lambda d: d.__setitem__("segments", "0")),
        "segments-million": variant(lambda d: d.__setitem__("segments", list(range(1_000_000)))),
        "steps-huge": variant(lambda d: d.__setitem__("steps", [2**70])),
        "schema-other": variant(lambda d: d.__setitem__("schema", "pol-challenge-v1")),
        "plan-digest-other": variant(lambda d: d.__setitem__("plan_digest", "0" * 64)),
        "nonce-missing": variant(lambda d: d.pop("nonce")),
        "nonce-other": variant(lambda d: d.__setitem__("nonce", "00" * 16)),
        "control-chars": variant(lambda d: d.__setitem__("schema", "\x1b]0;pwned\x07")),
        "duplicate-keys": c.challenge.read_bytes().rstrip().rstrip(b"}") + b', "segments": [0]}',
    }
    for name, data in variants.items():
        yield Case("challenge", "json", name, verify, REJECT, _write("c.json", data), json_stdout=True)
    respond = ["respond", str(c.compact), "--challenge", "c.json", "--out", "r.h5", "--json"]
    for name in ("empty", "garbage", "fifo", "dev-zero", "deep", "top-list", "segments-string", "segments-huge-int"):
        yield Case("challenge", "json", f"{name}:respond", respond, ERROR, _write("c.json", variants[name]), json_stdout=True)


RESPONSE_PATHS = ("states", "steps")


def response_cases(c: Corpus, rng: random.Random, flips: int) -> Iterator[Case]:
    import h5py

    verify = ["verify", str(c.compact), "--key", str(c.pub), "--response", "r.h5", "--challenge", str(c.challenge),
              "--segments", "1", "--seed", "0", "--json"]
    with h5py.File(c.response, "r") as f:
        tensors: list[str] = []
        f.visititems(lambda n, o: tensors.append(n) if isinstance(o, h5py.Dataset) else None)
    tensors = sorted(tensors)[:: max(1, len(tensors) // 6)]

    def case(family: str, name: str, edit: Any, path: str, expect: str) -> Case:
        b = edited(c.response, edit, path)

        def build(case_dir: Path) -> None:
            b(case_dir)
            (case_dir / "in.pol.h5").rename(case_dir / "r.h5")
        return Case("response", family, name, verify, expect, build, "r.h5", c.response, json_stdout=True)

    for path in tensors:
        for dt in ("float64", ">f4", "compound", "vlen-str"):
            yield case("dtype", f"{path}:{dt}", E.change_dtype(dt), path, REJECT)
        for how in ("drop-last-row", "add-dim", "huge-rows", "empty"):
            yield case("shape", f"{path}:{how}", E.change_shape(how), path, REJECT)
        for how in ("external-hdf5", "soft-to-sibling", "hard-cycle"):
            yield case("link", f"{path}:{how}", E.link(how, tensors[0]), path, ERROR)
        for how in ("vds-self", "vds-other-file"):
            yield case("virtual", f"{path}:{how}", E.virtual(how), path, ERROR)
        yield case("external", f"{path}:external-fifo", E.external_storage("external-fifo"), path, ERROR)
    for name, value in E.ATTR_VALUES.items():
        yield case("attr", f"/@challenge={name}", E.set_attr("challenge", value), "/", REJECT)
    yield case("attr", "/@challenge=50KB", E.set_attr("challenge", "[" * 50_000), "/", REJECT)
    yield case("attr", "/@format_version=1", E.set_attr("format_version", 1), "/", ERROR)
    yield case("member", "/:extra", E.add_member("group"), "", ERROR)
    yield case("flood", "/states:30000", E.flood_groups(30_000, "{:06d}"), "states", REJECT)
    yield case("nesting", "/states:deep", E.nest(30), "states", ERROR)
    raw = c.response.read_bytes()
    for i in range(flips):
        data, where = _flip(raw, rng)
        yield Case("response", "bitflip", where, verify, CLASSIFY, _write("r.h5", data), "r.h5", c.response,
                   json_stdout=True)


# -- /zk sections ---------------------------------------------------------------------------------
ZK_DATASETS = ("zk/binding_proofs", "zk/checkpoints", "zk/clipped", "zk/commitments", "zk/roots")
ZK_ATTRS = ("bits", "chunk_size", "dst", "genset_id", "layout", "length", "run_id", "scale_bits", "schema_version",
            "signature", "signer")


def zk_cases(c: Corpus, rng: random.Random, flips: int) -> Iterator[Case]:
    zk_verify = ["zk", "verify", "in.pol.h5", "--key", str(c.pub), "--json"]
    verify = c.verify_args("in.pol.h5")

    def case(family: str, name: str, edit: Any, path: str, expect: str, argv: list[str] = zk_verify) -> Case:
        return Case("zk", family, name, argv, expect, edited(c.zk, edit, path), "in.pol.h5", c.zk, json_stdout=True)

    for path in ZK_DATASETS:
        for dt in ("float64", "int8", ">i8", "compound", "vlen-str"):
            yield case("dtype", f"{path}:{dt}", E.change_dtype(dt), path, REJECT)
        for how in ("drop-last-row", "add-row", "add-dim", "huge-rows", "empty"):
            yield case("shape", f"{path}:{how}", E.change_shape(how), path, REJECT)
        for how in ("external-hdf5", "soft-to-sibling"):
            yield case("link", f"{path}:{how}", E.link(how, "zk/roots"), path, ERROR)
        yield case("virtual", f"{path}:vds-self", E.virtual("vds-self"), path, ERROR)
        yield case("virtual", f"{path}:vds-self:verify", E.virtual("vds-self"), path, ERROR, verify)
    for attr in ZK_ATTRS:
        for name in ("float", "string-digit", "array", "long-string", "control-chars", "empty", "negative", "int-max"):
            yield case("attr", f"/zk@{attr}={name}", E.set_attr(attr, E.ATTR_VALUES[name]), "zk", REJECT)
        yield case("attr", f"/zk@{attr}:delete", E.delete_attr(attr), "zk", REJECT)
    layouts = {"layout-deep": "[" * 100_000, "layout-huge-shape": json.dumps({"names": ["a"], "shapes": [[2**39, 2**39]]}),
               "layout-million": json.dumps({"names": [f"n{i}" for i in range(60_000)], "shapes": [[1]] * 60_000})}
    for name, text in layouts.items():
        yield case("attr", f"/zk@{name}", E.set_attr("layout", text), "zk", REJECT)
    for name, value in (("chunk_size", "1"), ("chunk_size", str(2**40)), ("length", str(10**15)), ("bits", "4096"),
                        ("scale_bits", "-5")):
        yield case("attr", f"/zk@{name}={value}", E.set_attr(name, value), "zk", REJECT)
    yield case("member", "/zk:extra", E.add_member("dataset"), "zk", REJECT)
    yield case("flood", "/zk:30000", E.flood_groups(30_000), "zk", REJECT)
    yield case("nesting", "/zk:deep", E.nest(30), "zk", ERROR)
    raw = c.zk.read_bytes()
    for i in range(flips):
        data, where = _flip(raw, rng)
        yield Case("zk", "bitflip", where, zk_verify, CLASSIFY, _write("in.pol.h5", data), "in.pol.h5", c.zk,
                   json_stdout=True)


# -- simulated TEE evidence -----------------------------------------------------------------------
def tee_cases(c: Corpus, rng: random.Random, flips: int) -> Iterator[Case]:
    quote = (c.root / "tee-ev" / "quote.bin").read_bytes()
    output = (c.root / "tee-ev" / "output.bin").read_bytes()
    policy = (c.tee / "policy.json").read_bytes()
    collateral = (c.tee / "collateral.json").read_bytes()

    def state(extra: dict[str, bytes | Callable[[Path], None]]) -> Callable[[Path], None]:
        def build(case_dir: Path) -> None:
            shutil.copytree(c.tee, case_dir / "tee")
            (case_dir / "output.bin").write_bytes(output)
            (case_dir / "quote.bin").write_bytes(quote)
            for name, data in extra.items():
                target = case_dir / name
                if target.exists():
                    target.unlink()
                _write(name, data)(case_dir)
        return build

    argv = c.tee_args("quote.bin", "tee")
    yield Case("tee", "control", "honest-quote", argv, ACCEPT, state({}), json_stdout=True)
    for name, data in {**_hostile(quote), "truncated-half": quote[: len(quote) // 2], "extended": quote + b"\0" * 64,
                       "zeroed": b"\0" * len(quote)}.items():
        yield Case("tee", "quote", name, argv, REJECT, state({"quote.bin": data}), json_stdout=True)
    for i in range(flips):
        data, where = _flip(quote, rng)
        yield Case("tee", "quote-bitflip", where, argv, REJECT, state({"quote.bin": data}), json_stdout=True)
    doc = json.loads(policy)

    def pvariant(edit: Callable[[dict[str, Any]], Any]) -> bytes:
        d = json.loads(json.dumps(doc))
        edit(d)
        return json.dumps(d).encode()

    policies: dict[str, bytes | Callable[[Path], None]] = {
        **_hostile(policy), "deep": b"[" * 200_000 + b"]" * 200_000, "top-list": b"[]",
        "drop-root-key": pvariant(lambda d: d.pop("root_public_key")),
        "extra-field": pvariant(lambda d: d.__setitem__("zz", 1)),
        "field-types": pvariant(lambda d: [d.__setitem__(k, [1]) for k in list(d)]),
    }
    for name, data in policies.items():
        yield Case("tee", "policy-json", name, argv, REJECT, state({"tee/policy.json": data}), json_stdout=True)
    cdoc_text = collateral
    collaterals: dict[str, bytes | Callable[[Path], None]] = {
        **_hostile(collateral), "deep": b"[" * 200_000 + b"]" * 200_000, "top-list": b"[]",
        "flipped": _flip(cdoc_text, rng)[0],
    }
    for name, data in collaterals.items():
        yield Case("tee", "collateral-json", name, [*argv, "--collateral", "col.json"], REJECT, state({"col.json": data}),
                   json_stdout=True)
        yield Case("tee", "collateral-store", name, argv, REJECT, state({"tee/collateral-store.json": data}),
                   json_stdout=True)
    for name, data in {"garbage": b"{", "deep": b"[" * 200_000 + b"]" * 200_000, "fifo": _fifo}.items():
        yield Case("tee", "nonce-store", name, argv, REJECT, state({"tee/nonces.json": data}), json_stdout=True)
