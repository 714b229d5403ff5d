"""Reading untrusted HDF5 files where a crash or a hang cannot take the reader down.

An HDF5 file from someone else is parsed only in a child process (``python -m
pol.untrusted_h5 FILE DIR``) with limits on memory, CPU time, open files and the bytes it may
write, and a wall-clock timeout. The child walks the file and refuses anything this project never
writes (see :func:`_check_dataset`): links other than hard links (soft, external), virtual
datasets, external storage, filters other than gzip/shuffle/fletcher32, dtypes other than native
little-endian numbers, non-scalar attributes, deep nesting or too many members, declared sizes
beyond the byte budget. It copies every dataset into a ``.npy`` file of DIR and describes the
tree in ``DIR/manifest.json``. The parent never opens the untrusted HDF5 file: it reads the
manifest (validated JSON) and maps the ``.npy`` files (``allow_pickle=False``) on demand.

A child that dies by a signal ("the file crashed the HDF5 reader"), exceeds a limit or times out
becomes a :class:`~pol.errors.ProofFormatError` (CLI exit 2) with one line; the parent lives on.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from pol.errors import ProofFormatError

MANIFEST = "manifest.json"
ALLOWED_FILTERS = {1: "gzip", 2: "shuffle", 3: "fletcher32"}
ALLOWED_KINDS = "fiub"
_EXIT_REFUSED = 3


@dataclass(frozen=True)
class Limits:
    """Resource limits for reading one untrusted file (all configurable; docs/FORMAT.md, Limits).

    ``bytes_per_input_byte`` and ``base_bytes`` bound the decompressed size the child may copy:
    ``base_bytes + bytes_per_input_byte * file size``; work is bounded per byte of input.
    """

    max_members: int = 200_000
    max_depth: int = 12
    max_attrs: int = 64
    max_attr_bytes: int = 1 << 16
    base_bytes: int = 256 << 20
    bytes_per_input_byte: int = 64
    memory_bytes: int = 1 << 30
    cpu_seconds: int = 120
    wall_seconds: float = 120.0
    open_files: int = 64

    @classmethod
    def from_env(cls) -> "Limits":
        """Overrides from ``POL_LIMIT_<FIELD>`` environment variables (e.g. POL_LIMIT_WALL_SECONDS=30)."""
        values: dict[str, Any] = {}
        for name, default in cls.__dataclass_fields__.items():  # type: ignore[attr-defined]
            raw = os.environ.get(f"POL_LIMIT_{name.upper()}")
            if raw is not None:
                try:
                    values[name] = type(default.default)(float(raw)) if default.default is not None else raw
                except ValueError:
                    raise ProofFormatError(f"POL_LIMIT_{name.upper()}={raw!r} is not a number") from None
        return cls(**values)

    def byte_budget(self, file_size: int) -> int:
        return self.base_bytes + self.bytes_per_input_byte * file_size


# -- the parent's view ------------------------------------------------------------------------
@dataclass
class Node:
    """A group (``members``) or a dataset (``dtype``, ``shape``) of a sanitised file."""

    path: str
    kind: str                                   # "group" | "dataset"
    attrs: dict[str, Any] = field(default_factory=dict)
    members: dict[str, "Node"] = field(default_factory=dict)
    dtype: np.dtype | None = None
    shape: tuple[int, ...] = ()
    _file: Path | None = None
    _array: np.ndarray | None = None

    @property
    def is_group(self) -> bool:
        return self.kind == "group"

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if not self.is_group else 0

    def __getitem__(self, key: Any) -> Any:
        """``node[name]`` for a member (h5py-like); ``node[()]`` or a slice for a dataset's values."""
        if isinstance(key, str):
            child = self.get(key)
            if child is None:
                raise KeyError(key)
            return child
        return self.read()[key]

    def keys(self) -> list[str]:
        return list(self.members)

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def get(self, path: str) -> "Node | None":
        node: Node | None = self
        for part in [p for p in path.split("/") if p]:
            if node is None or not node.is_group:
                return None
            node = node.members.get(part)
        return node

    def read(self) -> np.ndarray:
        """The dataset's values (a read-only memory map of the sanitised copy)."""
        if self.is_group:
            raise ProofFormatError(f"/{self.path} is a group, not a dataset")
        if self._array is None:
            assert self._file is not None
            try:
                arr = np.load(self._file, mmap_mode="r", allow_pickle=False)
            except ValueError:  # zero-size arrays cannot be memory-mapped
                arr = np.load(self._file, allow_pickle=False)
            if arr.dtype != self.dtype or tuple(arr.shape) != self.shape:
                raise ProofFormatError(f"/{self.path}: sanitised copy does not match its manifest")
            self._array = arr
        return self._array

    def visit_datasets(self, prefix: str = "") -> Iterator[tuple[str, "Node"]]:
        for name, child in self.members.items():
            sub = f"{prefix}{name}"
            if child.is_group:
                yield from child.visit_datasets(sub + "/")
            else:
                yield sub, child


class UntrustedFile:
    """A sanitised copy of an untrusted HDF5 file. Use as a context manager (removes the copy)."""

    def __init__(self, path: str | os.PathLike[str], limits: Limits | None = None, what: str = "file"):
        self.path = Path(path)
        self.limits = limits or Limits.from_env()
        if not self.path.is_file():
            raise ProofFormatError(f"{what} not found: {self.path}")
        self._dir = Path(tempfile.mkdtemp(prefix="pol-h5-"))
        try:
            _run_child(self.path.resolve(), self._dir, self.limits, what)  # the child runs in another directory
            self.root = _load_manifest(self._dir, self.limits)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        d = getattr(self, "_dir", None)
        if d is not None:
            self._dir = None  # type: ignore[assignment]
            root = getattr(self, "root", None)
            if root is not None:  # release memory maps before removing their files
                _release(root)
            shutil.rmtree(d, ignore_errors=True)

    def __enter__(self) -> "UntrustedFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _release(node: Node) -> None:
    node._array = None
    for child in node.members.values():
        _release(child)


def _limit_resources(limits: Limits, budget: int) -> None:  # runs in the child before exec
    import resource

    for res, value in ((resource.RLIMIT_AS, limits.memory_bytes), (resource.RLIMIT_CPU, limits.cpu_seconds),
                       (resource.RLIMIT_NOFILE, limits.open_files), (resource.RLIMIT_FSIZE, budget + (1 << 20)),
                       (resource.RLIMIT_CORE, 0)):
        try:
            resource.setrlimit(res, (value, value))
        except (ValueError, OSError):
            pass


def _run_child(path: Path, out: Path, limits: Limits, what: str) -> None:
    budget = limits.byte_budget(path.stat().st_size)
    # absolute paths: the child runs in ``out``, and a user may name the proof relative to their directory
    cmd = [sys.executable, "-s", "-m", "pol.untrusted_h5", str(path.resolve()), str(out.resolve()),
           json.dumps(limits.__dict__), str(budget)]
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
           "HDF5_USE_FILE_LOCKING": "FALSE", "OMP_NUM_THREADS": "1"}
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=limits.wall_seconds, env=env, cwd=out,
                              preexec_fn=lambda: _limit_resources(limits, budget), check=False)
    except subprocess.TimeoutExpired:
        raise ProofFormatError(f"{path} could not be read within {limits.wall_seconds:.0f} s (HDF5 reader timed out; "
                               "POL_LIMIT_WALL_SECONDS raises the limit)") from None
    if proc.returncode == 0:
        return
    message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    if proc.returncode == _EXIT_REFUSED and message:
        raise ProofFormatError(f"{path}: {message[-1][:300]}")
    if proc.returncode < 0:
        raise ProofFormatError(f"{path} crashed the HDF5 reader (signal {-proc.returncode}); the file is malformed")
    tail = message[-1][:200] if message else f"exit status {proc.returncode}"
    if "MemoryError" in tail:
        raise ProofFormatError(f"{path} needs more memory than the reader's limit (POL_LIMIT_MEMORY_BYTES)")
    raise ProofFormatError(f"{path} is not a readable {what} ({tail})")


_SCALAR_TYPES = (bool, int, float, str)


def _load_manifest(directory: Path, limits: Limits) -> Node:
    try:
        doc = json.loads((directory / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ProofFormatError(f"the HDF5 reader returned no usable manifest ({exc})") from None
    count = [0]

    def build(obj: Any, path: str, depth: int) -> Node:
        count[0] += 1
        if count[0] > limits.max_members or depth > limits.max_depth or not isinstance(obj, dict):
            raise ProofFormatError("malformed manifest from the HDF5 reader")
        attrs = obj.get("attrs", {})
        if not isinstance(attrs, dict) or not all(isinstance(v, _SCALAR_TYPES) for v in attrs.values()):
            raise ProofFormatError("malformed manifest attributes from the HDF5 reader")
        if obj.get("kind") == "group":
            members = obj.get("members", {})
            if not isinstance(members, dict):
                raise ProofFormatError("malformed manifest from the HDF5 reader")
            return Node(path, "group", attrs,
                        {k: build(v, f"{path}/{k}".lstrip("/"), depth + 1) for k, v in members.items()})
        if obj.get("kind") == "dataset":
            dtype, shape, name = obj.get("dtype"), obj.get("shape"), obj.get("file")
            if not (isinstance(dtype, str) and isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape)
                    and isinstance(name, str) and name.endswith(".npy") and "/" not in name):
                raise ProofFormatError("malformed dataset entry in the HDF5 reader's manifest")
            dt = np.dtype(dtype)
            if dt.kind not in ALLOWED_KINDS or dt.byteorder == ">":
                raise ProofFormatError(f"/{path} has a refused dtype {dtype}")
            return Node(path, "dataset", attrs, dtype=dt, shape=tuple(shape), _file=directory / name)
        raise ProofFormatError("malformed manifest from the HDF5 reader")

    return build(doc, "", 0)


# -- the child ----------------------------------------------------------------------------------
class _Refused(Exception):
    pass


def _attr_value(value: Any, where: str, limits: Limits) -> Any:
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refused(f"{where} is not UTF-8 text") from None
    if isinstance(value, str):
        if len(value.encode("utf-8")) > limits.max_attr_bytes:
            raise _Refused(f"{where} is longer than {limits.max_attr_bytes} bytes")
        return value
    if isinstance(value, np.ndarray):
        if value.shape != ():
            raise _Refused(f"{where} is an array attribute; only scalars are allowed")
        value = value[()]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        if not math.isfinite(float(value)):
            raise _Refused(f"{where} is not a finite number")
        return float(value)
    raise _Refused(f"{where} has an unsupported type {type(value).__name__}")


def _attrs(obj: Any, where: str, limits: Limits) -> dict[str, Any]:
    keys = list(obj.attrs.keys())
    if len(keys) > limits.max_attrs:
        raise _Refused(f"{where} has more than {limits.max_attrs} attributes")
    return {k: _attr_value(obj.attrs[k], f"attribute {k!r} of {where}", limits) for k in keys}


def _check_dataset(ds: Any, where: str) -> None:
    if ds.is_virtual:
        raise _Refused(f"{where} is a virtual dataset (mapped to other data); refused")
    if ds.external:
        raise _Refused(f"{where} uses external storage (data outside the file); refused")
    for fid in _filter_ids(ds):
        if fid not in ALLOWED_FILTERS:
            raise _Refused(f"{where} uses HDF5 filter {fid}, which this reader does not accept "
                           f"(allowed: {', '.join(ALLOWED_FILTERS.values())})")
    dt = ds.dtype
    if dt.kind not in ALLOWED_KINDS or dt.fields is not None or dt.subdtype is not None:
        raise _Refused(f"{where} has dtype {dt}; only plain numbers are allowed")
    if dt.byteorder == ">" or (dt.byteorder == "=" and sys.byteorder != "little"):
        raise _Refused(f"{where} is big-endian; only native little-endian data is allowed")
    if ds.shape is None:
        raise _Refused(f"{where} has no shape (null dataspace)")


def _filter_ids(ds: Any) -> list[int]:
    plist = ds.id.get_create_plist()
    return [int(plist.get_filter(i)[0]) for i in range(plist.get_nfilters())]


def _copy(ds: Any, target: Path, budget: list[int], where: str) -> None:
    size = int(np.prod(ds.shape, dtype=object)) * ds.dtype.itemsize
    if size > budget[0]:
        raise _Refused(f"{where} declares {size} bytes, more than the reader's budget for this file "
                       "(work is bounded per byte of input; POL_LIMIT_BYTES_PER_INPUT_BYTE raises it)")
    budget[0] -= size
    dtype = ds.dtype.newbyteorder("<") if ds.dtype.byteorder == "=" else ds.dtype
    out = np.lib.format.open_memmap(target, mode="w+", dtype=dtype, shape=ds.shape) if size else None
    if out is None:
        np.save(target, np.zeros(ds.shape, dtype=dtype), allow_pickle=False)
        return
    if ds.ndim == 0:
        out[()] = ds[()]
    else:
        rows = max(1, (16 << 20) // max(1, size // max(1, ds.shape[0])))
        for lo in range(0, ds.shape[0], rows):
            out[lo:lo + rows] = ds[lo:lo + rows]
    out.flush()
    del out


def _child(path: str, out: str, limits: Limits, budget_bytes: int) -> None:
    import h5py

    target = Path(out)
    budget = [budget_bytes]
    count = [0]
    try:
        f = h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise _Refused(f"not a readable HDF5 file ({str(exc).splitlines()[0][:120]})") from None

    def walk(group: Any, path_: str, depth: int) -> dict[str, Any]:
        if depth > limits.max_depth:
            raise _Refused(f"/{path_} is nested deeper than {limits.max_depth} levels")
        where = f"/{path_}" if path_ else "the root group"
        node: dict[str, Any] = {"kind": "group", "attrs": _attrs(group, where, limits), "members": {}}
        for name in group.keys():
            count[0] += 1
            if count[0] > limits.max_members:
                raise _Refused(f"the file has more than {limits.max_members} members")
            sub = f"{path_}/{name}" if path_ else name
            link = group.get(name, getlink=True)
            if not isinstance(link, h5py.HardLink):
                raise _Refused(f"/{sub} is a {type(link).__name__}; links are refused (never followed)")
            obj = group[name]
            if isinstance(obj, h5py.Group):
                node["members"][name] = walk(obj, sub, depth + 1)
            elif isinstance(obj, h5py.Dataset):
                _check_dataset(obj, f"/{sub}")
                file_name = f"{count[0]:08d}.npy"
                _copy(obj, target / file_name, budget, f"/{sub}")
                node["members"][name] = {"kind": "dataset", "dtype": obj.dtype.newbyteorder("<").str
                                         if obj.dtype.byteorder == "=" else obj.dtype.str,
                                         "shape": list(obj.shape), "file": file_name,
                                         "attrs": _attrs(obj, f"/{sub}", limits)}
            else:
                raise _Refused(f"/{sub} is neither a group nor a dataset")
        return node

    with f:
        manifest = walk(f, "", 0)
    (target / MANIFEST).write_text(json.dumps(manifest), "utf-8")


def main(argv: list[str]) -> int:
    path, out, limits_json, budget = argv
    limits = Limits(**json.loads(limits_json))
    try:
        _child(path, out, limits, int(budget))
    except _Refused as exc:
        print(str(exc).replace("\n", " "), file=sys.stderr)
        return _EXIT_REFUSED
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        print(f"refused: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}", file=sys.stderr)
        return _EXIT_REFUSED
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
