"""Run a :class:`~tee_sim.measurement.CodeImage` from its measured bytes (private).

Each enclave gets its own :class:`EnclaveLoader`: the image's modules are executed from the
bytes that were measured, into fresh module objects that are never put in ``sys.modules``.
Their ``__builtins__`` carry an ``__import__`` that resolves first-party names to these
private copies (loading parents first, as CPython does) and refuses a first-party module the
image does not hold; third-party and standard-library imports go to the host's import
system (not measured, see docs/TEE.md). So patching a module on the host, or editing a file
after launch, does not change the code an enclave runs.
"""

from __future__ import annotations

import builtins
import os
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tee_sim.errors import EnclaveError
from tee_sim.measurement import CodeImage, is_first_party_top


class EnclaveLoader:
    """A private module namespace for one enclave, built from one code image."""

    def __init__(self, image: CodeImage) -> None:
        self._image = image
        self._sources = {m.name: m for m in image.modules}
        self._tops = {name.partition(".")[0] for name in self._sources}
        self._modules: dict[str, types.ModuleType] = {}
        self._checked_tops: set[str] = set(image.external)
        self._builtins = dict(vars(builtins))
        self._builtins["__import__"] = self._import

    def entry(self) -> Callable[..., Any]:
        """The image's entry function, from a private copy of its module."""
        if self._image.entry is None:
            raise EnclaveError("this enclave's image has no entry function (it can attest, not run)")
        module, qualname = self._image.entry.split(":")
        obj: Any = self._load(module)
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                raise EnclaveError(f"{module} does not define {qualname} when run from its file")
        if not callable(obj):
            raise EnclaveError(f"{self._image.entry} is not a function")
        return obj  # type: ignore[no-any-return]

    def _load(self, name: str) -> types.ModuleType:
        if name in self._modules:
            return self._modules[name]
        src = self._sources.get(name)
        if src is None:
            raise EnclaveError(f"the enclave code imports {name}, which is not part of its measured image")
        mod = types.ModuleType(name)
        mod.__file__ = src.path
        if src.kind == "module":
            mod.__package__ = name.rpartition(".")[0]
        else:
            mod.__package__ = name
            mod.__path__ = [os.path.dirname(src.path) if src.kind == "package" else src.path]
        mod.__dict__["__builtins__"] = self._builtins
        self._modules[name] = mod  # before executing: a circular import sees the partial module, as in CPython
        try:
            if src.source:
                exec(compile(src.source, src.path, "exec"), mod.__dict__)  # noqa: S102 - the measured bytes
        except BaseException:
            del self._modules[name]
            raise
        parent, _, child = name.rpartition(".")
        if parent in self._modules:
            setattr(self._modules[parent], child, mod)
        return mod

    def _import(self, name: str, globals: Mapping[str, Any] | None = None, locals: Any = None,
                fromlist: Sequence[str] | None = (), level: int = 0) -> types.ModuleType:
        if level:
            package = (globals or {}).get("__package__") or ""
            base = package.rsplit(".", level - 1)[0] if level > 1 else package
            absolute = f"{base}.{name}" if name else base
        else:
            absolute = name
        top = absolute.partition(".")[0]
        if top not in self._tops:
            if top not in self._checked_tops:
                if is_first_party_top(top):
                    raise EnclaveError(f"the enclave code imports {absolute}, first-party code outside its measured "
                                       "image (a dynamic import?)")
                self._checked_tops.add(top)
            return builtins.__import__(name, globals, locals, fromlist, level)  # type: ignore[arg-type]
        parts = absolute.split(".")
        for i in range(1, len(parts) + 1):
            self._load(".".join(parts[:i]))
        mod = self._modules[absolute]
        if fromlist:
            for item in fromlist:
                sub = f"{absolute}.{item}"
                if item != "*" and not hasattr(mod, item) and sub in self._sources:
                    self._load(sub)
            return mod
        return self._modules[parts[0]] if not level else mod


__all__ = ["EnclaveLoader"]
