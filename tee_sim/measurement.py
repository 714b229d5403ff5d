"""Enclave measurements: which code ``mr_enclave`` covers, and ``mr_signer``.

An enclave's code is a :class:`CodeImage`: the entry function's module plus every
*first-party* module it imports, transitively, as the bytes on disk at launch. Imports are
found statically (``import`` and ``from ... import`` anywhere in a module, lazy imports inside
functions included; relative imports resolved; the parent packages Python would run are
included). First-party means: a module of the entry's own top-level package, of a package
named in ``first_party``, or any module whose file lies outside the standard library and
site-packages (this project's packages in a source checkout or editable install, your own
modules). Third-party and standard-library modules are named (their top-level names enter
the measurement), not measured: the simulation does not model their integrity.

The enclave runs what was measured: :mod:`tee_sim._loader` executes the image's bytes in a
namespace private to the enclave, so patching a function on the host, or editing a file after
launch, changes nothing inside. Code that cannot be re-created from its module's file is
refused: closures (their captured values are not in any file), functions defined inside
other functions, lambdas, builtins, ``__main__``.

``mr_enclave = SHA-256( lp("pol-tee-sim/mr_enclave/v2") || lp(entry "module:qualname") ||
lp(python "3.11") || for each module, by name: lp(name) || lp(kind) || lp(SHA-256(bytes)) ||
lp(canonical_json(sorted third-party top-level names)) || lp(canonical_json(config)) )`` where
``lp(x)`` is ``x`` prefixed by its little-endian u64 length. File paths are not measured, so
the same checkout measures the same on every machine.

``mr_signer = SHA-256(signer's Ed25519 public key)`` (SGX hashes the RSA modulus of the
SIGSTRUCT signer; same idea).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import importlib.util
import os
import site
import sys
import sysconfig
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import nacl.signing

from tee_sim._encoding import canonical_json
from tee_sim.errors import EnclaveError

MEASUREMENT_CONTEXT = b"pol-tee-sim/mr_enclave/v2"
#: Most modules one image may hold (a guard against runaway import graphs).
MAX_MODULES = 2000

#: Seed of the well-known *development* enclave signer. It is public: anyone can sign with it,
#: so pinning its mr_signer pins nothing. Production enclaves pass their own ``signer``.
DEV_SIGNER_SEED = hashlib.sha256(b"pol-tee-sim development enclave signer (public, do not trust)").digest()


def dev_signer() -> nacl.signing.SigningKey:
    """The well-known development signer (like the SGX SDK's sample enclave key)."""
    return nacl.signing.SigningKey(DEV_SIGNER_SEED)


def _lp(part: bytes) -> bytes:
    return len(part).to_bytes(8, "little") + part


def config_bytes(config: Mapping[str, Any] | None) -> bytes:
    """Canonical JSON of an enclave configuration; raise EnclaveError if not JSON-serialisable."""
    try:
        return canonical_json(dict(config or {}))
    except (TypeError, ValueError) as exc:
        raise EnclaveError(f"enclave config must be JSON-serialisable (str keys, no NaN): {exc}") from None


# --------------------------------------------------------------------------- the code image


@dataclass(frozen=True)
class ModuleSource:
    """One measured module: its name, kind (module, package, namespace) and the bytes that run."""

    name: str
    kind: str
    path: str
    source: bytes

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.source).digest()


@dataclass(frozen=True)
class CodeImage:
    """The code an enclave runs: an entry point (or None for an attest-only image) and its modules."""

    entry: str | None
    modules: tuple[ModuleSource, ...]
    external: tuple[str, ...]

    @classmethod
    def of_function(cls, fn: Callable[..., Any], *, first_party: Iterable[str] = ()) -> CodeImage:
        """The image of a module-level function and everything first-party it imports."""
        module, qualname = _function_identity(fn)
        top = module.partition(".")[0]
        modules, external = _closure([module], {top, *first_party})
        return cls(f"{module}:{qualname}", modules, external)

    @classmethod
    def of_modules(cls, names: Iterable[str], *, first_party: Iterable[str] = ()) -> CodeImage:
        """An image without entry point: these modules (e.g. ``["pol.recorder"]``) and their imports.

        For enclaves that only attest (``Enclave.attest``), e.g. a split-learning node whose
        measurement covers the project's code and whose config is its stage spec.
        """
        names = list(names)
        if not names:
            raise EnclaveError("an image needs at least one module")
        modules, external = _closure(names, {n.partition(".")[0] for n in names} | set(first_party))
        return cls(None, modules, external)

    def module(self, name: str) -> ModuleSource | None:
        for m in self.modules:
            if m.name == name:
                return m
        return None

    def measurement(self, config: Mapping[str, Any] | None = None) -> bytes:
        """``mr_enclave`` of this image run with ``config``."""
        h = hashlib.sha256()
        parts = [MEASUREMENT_CONTEXT, (self.entry or "").encode(), f"{sys.version_info[0]}.{sys.version_info[1]}".encode()]
        for m in self.modules:
            parts += [m.name.encode(), m.kind.encode(), m.digest]
        parts += [canonical_json(sorted(self.external)), config_bytes(config)]
        for part in parts:
            h.update(_lp(part))
        return h.digest()


def measure(code: Callable[..., Any] | CodeImage, config: Mapping[str, Any] | None = None) -> bytes:
    """The 32-byte ``mr_enclave`` of running ``code`` (a function or a :class:`CodeImage`) with ``config``."""
    image = code if isinstance(code, CodeImage) else CodeImage.of_function(code)
    return image.measurement(config)


def mr_signer_of(signer_public_key: bytes) -> bytes:
    """The 32-byte ``mr_signer`` of an Ed25519 enclave-signing public key."""
    return hashlib.sha256(bytes(signer_public_key)).digest()


DEV_SIGNER_MR_SIGNER = mr_signer_of(bytes(dev_signer().verify_key))


# --------------------------------------------------------------------------- what may be measured


def _function_identity(fn: Callable[..., Any]) -> tuple[str, str]:
    """(module, qualname) of a module-level function; EnclaveError for anything else."""
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    if not isinstance(fn, types.FunctionType):
        raise EnclaveError(f"cannot measure {name}: enclave code must be a Python function defined in a file "
                           "(its source is unavailable otherwise)")
    if fn.__closure__:
        raise EnclaveError(f"cannot measure {name}: it is a closure, and the values it captured are in no file "
                           "(two closures with the same source would measure alike); define it at module level "
                           "and pass values through the config")
    if "<locals>" in fn.__qualname__ or "<lambda>" in fn.__qualname__:
        raise EnclaveError(f"cannot measure {name}: only module-level functions can be loaded from their file")
    if fn.__module__ in (None, "__main__"):
        raise EnclaveError(f"cannot measure {name}: enclave code must live in an importable module, not __main__")
    return fn.__module__, fn.__qualname__


# --------------------------------------------------------------------------- the import closure


@lru_cache(maxsize=1)
def _external_roots() -> tuple[str, ...]:
    """Directories of the standard library and installed third-party packages."""
    roots: set[str] = set()
    for scheme_vars in ({}, {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}):
        paths = sysconfig.get_paths(vars=scheme_vars)
        roots.update(paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths)
    roots.update(site.getsitepackages())
    roots.add(site.getusersitepackages())
    return tuple(sorted({os.path.realpath(r) for r in roots if r}))


def _is_external_file(path: str) -> bool:
    real = os.path.realpath(path)
    return any(real == r or real.startswith(r + os.sep) for r in _external_roots())


def _find_spec(name: str) -> importlib.machinery.ModuleSpec | None:
    """Locate a module without executing it (a parent's ``__init__`` is never run for this)."""
    parent, _, _ = name.rpartition(".")
    try:
        if not parent:
            return importlib.util.find_spec(name)
        parent_spec = _find_spec(parent)
        if parent_spec is None or parent_spec.submodule_search_locations is None:
            return None
        return importlib.machinery.PathFinder.find_spec(name, list(parent_spec.submodule_search_locations))
    except (ImportError, ValueError):
        return None


def is_first_party_top(top: str) -> bool:
    """Whether the top-level module ``top`` lives outside the standard library and site-packages."""
    spec = _find_spec(top)
    if spec is None or spec.loader is importlib.machinery.BuiltinImporter:
        return False
    origin = spec.origin if spec.origin not in (None, "namespace") else next(iter(spec.submodule_search_locations or []), "")
    return bool(origin) and origin not in ("built-in", "frozen") and not _is_external_file(origin)


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _resolve_relative(module: str | None, level: int, current: str, is_package: bool) -> str:
    if level == 0:
        return module or ""
    package = current if is_package else current.rpartition(".")[0]
    base = package.rsplit(".", level - 1)[0] if level > 1 else package
    if level > 1 and package.count(".") < level - 1:
        raise EnclaveError(f"{current}: relative import beyond its top-level package")
    return f"{base}.{module}" if module else base


def _imported_names(tree: ast.AST, current: str, is_package: bool) -> set[str]:
    """Every module an ``import`` statement in ``tree`` may load (candidates; attributes drop out later)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.update(_with_parents(alias.name))
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_relative(node.module, node.level, current, is_package)
            if not base:
                continue
            out.update(_with_parents(base))
            out.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return out


def _module_source(name: str, spec: importlib.machinery.ModuleSpec) -> ModuleSource:
    origin = spec.origin
    if spec.submodule_search_locations is not None and (origin is None or origin == "namespace"):
        locations = list(spec.submodule_search_locations)
        return ModuleSource(name, "namespace", locations[0] if locations else "", b"")
    if not origin or not origin.endswith(".py"):
        raise EnclaveError(f"cannot measure {name}: its code is not Python source ({origin})")
    try:
        with open(origin, "rb") as fh:
            source = fh.read()
    except OSError as exc:
        raise EnclaveError(f"cannot measure {name}: {exc.strerror or exc}") from None
    kind = "package" if spec.submodule_search_locations is not None else "module"
    return ModuleSource(name, kind, origin, source)


def _closure(roots: list[str], first_party_tops: set[str]) -> tuple[tuple[ModuleSource, ...], tuple[str, ...]]:
    found: dict[str, ModuleSource] = {}
    external: set[str] = set()
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in found:
            continue
        spec = _find_spec(name)
        if spec is None:
            if name in roots:
                raise EnclaveError(f"cannot measure {name}: module not found")
            continue  # ``from pkg import attribute``: not a module
        top = name.partition(".")[0]
        origin = spec.origin or ""
        builtin = origin in ("built-in", "frozen") or spec.loader is importlib.machinery.BuiltinImporter
        if top not in first_party_tops and (builtin or (origin and _is_external_file(origin))):
            external.add(top)
            continue
        if builtin:
            raise EnclaveError(f"cannot measure {name}: a built-in module inside the measured packages")
        src = _module_source(name, spec)
        found[name] = src
        if len(found) > MAX_MODULES:
            raise EnclaveError(f"the code imports more than {MAX_MODULES} first-party modules")
        if src.kind == "namespace":
            continue
        try:
            tree = ast.parse(src.source, filename=src.path)
        except (SyntaxError, ValueError) as exc:
            raise EnclaveError(f"cannot measure {name}: {exc}") from None
        pending.extend(sorted(_imported_names(tree, name, src.kind == "package") - found.keys()))
    external -= {m.partition(".")[0] for m in found}
    return tuple(found[n] for n in sorted(found)), tuple(sorted(external))


__all__ = [
    "CodeImage",
    "ModuleSource",
    "measure",
    "mr_signer_of",
    "dev_signer",
    "DEV_SIGNER_MR_SIGNER",
    "config_bytes",
]
