"""HDF5-level edits of a copy of an honest file: dtypes, shapes, storage, links, attributes, floods.

Each function takes the open file (``h5py.File`` in ``r+``), the path it edits and the case
directory (for the side files links and external storage point to). They write what a hostile
tool can write with plain h5py; none of it is checked here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

Edit = Callable[[h5py.File, str, Path], None]


def recreate(f: h5py.File, path: str, data: Any, **kwargs: Any) -> h5py.Dataset:
    """Replace the dataset at ``path`` by ``data`` (keeping its attributes)."""
    attrs = dict(f[path].attrs) if path in f else {}
    if path in f:
        del f[path]
    ds = f.create_dataset(path, data=data, **kwargs)
    for k, v in attrs.items():
        ds.attrs[k] = v
    return ds


def values(f: h5py.File, path: str) -> np.ndarray:
    return np.asarray(f[path][()])


# -- dtypes ---------------------------------------------------------------------------------------
def _special(kind: str, shape: tuple[int, ...]) -> np.ndarray:
    n = int(np.prod(shape)) if shape else 1
    if kind == "compound":
        return np.zeros(shape, dtype=[("a", "<i8"), ("b", "<f4")])
    if kind == "vlen-str":
        return np.array(["x"] * n, dtype=h5py.string_dtype()).reshape(shape)
    if kind == "fixed-bytes":
        return np.zeros(shape, dtype="S8")
    if kind == "opaque":
        return np.zeros(shape, dtype="V8")
    if kind == "array-of-2":
        return np.zeros(shape, dtype=np.dtype((np.int64, (2,))))
    if kind == "complex64":
        return np.zeros(shape, dtype=np.complex64)
    raise ValueError(kind)


NUMERIC_DTYPES = ("float32", "float64", "float16", "int8", "int32", "int64", "uint8", "uint64", "bool",
                  ">i8", ">f4", ">u2")
SPECIAL_DTYPES = ("compound", "vlen-str", "fixed-bytes", "opaque", "array-of-2", "complex64", "enum", "reference")


def change_dtype(dtype: str) -> Edit:
    def edit(f: h5py.File, path: str, case_dir: Path) -> None:
        old = values(f, path)
        if dtype in NUMERIC_DTYPES:
            with np.errstate(all="ignore"):
                data = old.astype(np.dtype(dtype)) if old.dtype.kind in "fiub" else np.zeros(old.shape, dtype)
            recreate(f, path, data)
        elif dtype == "enum":
            del f[path]
            f.create_dataset(path, data=np.zeros(old.shape, np.int8), dtype=h5py.enum_dtype({"a": 0, "b": 1}, basetype="i1"))
        elif dtype == "reference":
            del f[path]
            ds = f.create_dataset(path, shape=old.shape, dtype=h5py.ref_dtype)
            if old.size:
                ds[...] = f.ref if old.ndim == 0 else np.full(old.shape, f.ref, dtype=h5py.ref_dtype)
        else:
            recreate(f, path, _special(dtype, old.shape))
    return edit


# -- shapes ---------------------------------------------------------------------------------------
def change_shape(how: str) -> Edit:
    def edit(f: h5py.File, path: str, case_dir: Path) -> None:
        old = values(f, path)
        if old.ndim == 0:
            data = {"add-dim": old.reshape(1), "empty": np.zeros(0, old.dtype)}.get(how, old.reshape(1, 1))
        elif how == "drop-last-row":
            data = old[:-1]
        elif how == "add-row":
            data = np.concatenate([old, old[-1:]]) if len(old) else np.zeros((1, *old.shape[1:]), old.dtype)
        elif how == "add-dim":
            data = old[..., None]
        elif how == "flatten":
            data = old.reshape(-1) if old.ndim > 1 else old.reshape(1, -1)
        elif how == "scalar":
            data = old.reshape(-1)[0] if old.size else np.zeros((), old.dtype)
        elif how == "empty":
            data = np.zeros((0, *old.shape[1:]), old.dtype)
        elif how == "transpose":
            data = old.T.copy() if old.ndim > 1 else old[::-1].copy()
        elif how == "huge-rows":  # declared huge, stored as fill value: the byte budget must refuse it
            del f[path]
            f.create_dataset(path, shape=(1 << 34, *old.shape[1:]), dtype=old.dtype, chunks=(1, *old.shape[1:]) or None)
            return
        else:
            raise ValueError(how)
        recreate(f, path, data)
    return edit


SHAPES = ("drop-last-row", "add-row", "add-dim", "flatten", "scalar", "empty", "transpose", "huge-rows")


# -- storage: chunking, filters, layout -----------------------------------------------------------
def _chunks(shape: tuple[int, ...]) -> tuple[int, ...] | None:
    return tuple(1 for _ in shape) if shape else None


def storage(how: str) -> Edit:
    """Same values, another storage. gzip/shuffle/fletcher32/contiguous/compact keep the content
    (a reader must see the same proof); lzf, scaleoffset, nbit and a missing plugin are refused."""
    def edit(f: h5py.File, path: str, case_dir: Path) -> None:
        old = values(f, path)
        shape = old.shape
        if how == "gzip9-chunk1":
            recreate(f, path, old, chunks=_chunks(shape), compression="gzip", compression_opts=9)
        elif how == "shuffle-fletcher32":
            recreate(f, path, old, chunks=_chunks(shape), shuffle=True, fletcher32=True)
        elif how == "contiguous":
            recreate(f, path, old)
        elif how == "lzf":
            recreate(f, path, old, chunks=_chunks(shape), compression="lzf")
        elif how == "scaleoffset":
            recreate(f, path, old, chunks=_chunks(shape), scaleoffset=0 if old.dtype.kind in "iu" else 3)
        elif how in ("nbit", "missing-plugin", "compact"):
            _low_level(f, path, old, how)
        else:
            raise ValueError(how)
    return edit


def _low_level(f: h5py.File, path: str, old: np.ndarray, how: str) -> None:
    attrs = dict(f[path].attrs)
    del f[path]
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    if how == "compact":
        dcpl.set_layout(h5py.h5d.COMPACT)
    else:
        dcpl.set_chunk(_chunks(old.shape) or (1,))
        if how == "nbit":
            dcpl.set_filter(5, 0, ())  # H5Z_FILTER_NBIT
        else:  # a filter id no plugin provides, marked optional so writing succeeds without it
            dcpl.set_filter(307, h5py.h5z.FLAG_OPTIONAL, ())
    shape = old.shape if old.shape else (1,)
    data = old.reshape(shape)
    space = h5py.h5s.create_simple(shape)
    tid = h5py.h5t.py_create(data.dtype, logical=True)
    dsid = h5py.h5d.create(f.id, path.encode(), tid, space, dcpl=dcpl)
    dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(data))
    for k, v in attrs.items():
        f[path].attrs[k] = v


STORAGE_SAME = ("gzip9-chunk1", "shuffle-fletcher32", "contiguous", "compact")
STORAGE_REFUSED = ("lzf", "scaleoffset", "nbit", "missing-plugin")


# -- links, virtual datasets, external storage ----------------------------------------------------
def _side_file(case_dir: Path, data: np.ndarray) -> Path:
    side = case_dir / "side.h5"
    with h5py.File(side, "w") as g:
        g.create_dataset("data", data=data)
    return side


def link(how: str, other: str | None = None) -> Edit:
    def edit(f: h5py.File, path: str, case_dir: Path) -> None:
        old = values(f, path) if isinstance(f.get(path), h5py.Dataset) else None
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if path in f:
            del f[path]
        if how == "soft-to-sibling":
            f[path] = h5py.SoftLink("/" + (other or "plan"))
        elif how == "soft-dangling":
            f[path] = h5py.SoftLink("/does/not/exist")
        elif how == "soft-cycle":
            f[path] = h5py.SoftLink("/" + path)
        elif how == "external-hdf5":
            side = _side_file(case_dir, old if old is not None else np.zeros(3, np.uint8))
            f[path] = h5py.ExternalLink(str(side), "/data")
        elif how == "external-system-file":
            f[path] = h5py.ExternalLink("/etc/hostname", "/data")
        elif how == "hard-alias":
            f[path] = f["/" + (other or "plan")]
        elif how == "hard-cycle":  # a group that contains itself
            f[path] = f["/" + parent] if parent else f["/"]
        else:
            raise ValueError(how)
    return edit


LINKS = ("soft-to-sibling", "soft-dangling", "soft-cycle", "external-hdf5", "external-system-file", "hard-alias",
         "hard-cycle")


def virtual(how: str) -> Edit:
    def edit(f: h5py.File, path: str, case_dir: Path) -> None:
        old = values(f, path)
        shape = old.shape or (1,)
        del f[path]
        layout = h5py.VirtualLayout(shape=shape, dtype=old.dtype)
        if how == "vds-other-file":
            side = _side_file(case_dir, old.reshape(shape))
            layout[...] = h5py.VirtualSource(str(side), "data", shape=shape)
        elif how == "vds-self":  # the dataset maps to itself
            layout[...] = h5py.VirtualSource(".", "/" + path, shape=shape, dtype=old.dtype)
        elif how == "vds-sibling":
            f.create_dataset(path + "_src", data=old.reshape(shape))
            layout[...] = h5py.VirtualSource(".", "/" + path + "_src", shape=shape, dtype=old.dtype)
        elif how == "vds-missing-file":
            layout[...] = h5py.VirtualSource(str(case_dir / "missing.h5"), "data", shape=shape)
        else:
            raise ValueError(how)
        f.create_virtual_dataset(path, layout, fillvalue=0)
    return edit


VIRTUAL = ("vds-other-file", "vds-self", "vds-sibling", "vds-missing-file")


def external_storage(how: str) -> Edit:
    def edit(f: h5py.File, path: str, case_dir: Path) -> None:
        old = values(f, path)
        shape = old.shape or (1,)
        nbytes = int(np.prod(shape)) * old.dtype.itemsize
        if how == "external-raw-file":
            target = case_dir / "raw.bin"
            target.write_bytes(np.ascontiguousarray(old).tobytes())
        elif how == "external-fifo":
            target = case_dir / "fifo"
            os.mkfifo(target)
        elif how == "external-dev-zero":
            target = Path("/dev/zero")
        elif how == "external-system-file":
            target = Path("/etc/hostname")
        else:
            raise ValueError(how)
        del f[path]
        f.create_dataset(path, shape=shape, dtype=old.dtype, external=[(str(target), 0, max(nbytes, 1))])
    return edit


EXTERNAL = ("external-raw-file", "external-fifo", "external-dev-zero", "external-system-file")


# -- attributes -------------------------------------------------------------------------------------
ATTR_VALUES: dict[str, Any] = {
    "float": 2.0, "string-digit": "2", "array": np.array([2]), "bool": np.bool_(True), "non-utf8-bytes": np.bytes_(b"\xff\xfe"),
    "int8": np.int8(3), "int-max": np.int64(2**63 - 1), "negative": np.int64(-1), "nan": float("nan"),
    "empty-string": "", "long-string": "x" * (1 << 20), "control-chars": "\x1b]0;pwned\x07\x1b[2J",
    "empty": h5py.Empty("f"), "compound": np.zeros((), dtype=[("a", "<i4")]), "vlen-array": np.array([1, 2, 3], dtype=np.int32),
}


def set_attr(name: str, value: Any) -> Edit:
    def edit(f: h5py.File, path: str, case_dir: Path) -> None:
        f[path].attrs[name] = value
    return edit


def delete_attr(name: str) -> Edit:
    def edit(f: h5py.File, path: str, case_dir: Path) -> None:
        del f[path].attrs[name]
    return edit


# -- nesting and floods -----------------------------------------------------------------------------
def nest(depth: int, name: str = "x") -> Edit:
    def edit(f: h5py.File, path: str, case_dir: Path) -> None:
        g = f[path] if path else f["/"]
        for _ in range(depth):
            g = g.create_group(name)
        g.create_dataset("leaf", data=np.zeros(2, np.float32))
    return edit


def flood_groups(count: int, pattern: str = "extra{:06d}") -> Edit:
    """``path`` ends with ``count`` members named by ``pattern`` (those it holds already, such as
    the checkpoints ``000000``.., are kept; the rest are empty groups)."""
    def edit(f: h5py.File, path: str, case_dir: Path) -> None:
        g = f[path] if path else f["/"]
        for i in range(count):
            if pattern.format(i) not in g:
                g.create_group(pattern.format(i))
    return edit


def flood_attrs(count: int) -> Edit:
    def edit(f: h5py.File, path: str, case_dir: Path) -> None:
        g = f[path] if path else f["/"]
        for i in range(count):
            g.attrs[f"a{i}"] = i
    return edit


def add_member(kind: str) -> Edit:
    def edit(f: h5py.File, path: str, case_dir: Path) -> None:
        target = f"{path}/zz_extra" if path else "zz_extra"
        if kind == "group":
            f.create_group(target)
        else:
            f.create_dataset(target, data=np.zeros(4, np.uint8))
    return edit


def delete(f: h5py.File, path: str, case_dir: Path) -> None:
    del f[path]
