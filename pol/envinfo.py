"""Environment fingerprint: what decides whether a replay is bitwise exact, and how to reproduce it.

The recorder writes :func:`environment_fingerprint` into the plan. A verifier compares it with
its own (:func:`exact_mismatches`) and reproduces what it can (:func:`reproduction`): the thread
count and deterministic flags in-process, the CPU kernel family (``ATEN_CPU_CAPABILITY``, read
by torch once at start-up) in the replay processes it spawns. What it cannot reproduce (another
torch build, a CUDA device it lacks, a CPU family its processor does not have) rules out exact
replay; the verifier then refuses to judge unless its user asks for tolerance mode.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from typing import Any

# Fields whose equality makes bitwise replay the expected outcome.
EXACT_FIELDS = ("torch", "machine", "device_type", "device_name", "dtype", "threads", "deterministic",
                "cpu_capability", "mkldnn", "tf32")
# Environment variables that change which kernels torch and its libraries pick at start-up.
DISPATCH_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR")
# CPU kernel families, weakest first (torch's names, as get_cpu_capability() prints them).
_CAPABILITY_ORDER = ("DEFAULT", "VSX", "ZVECTOR", "SVE256", "AVX2", "AVX512")
MAX_THREADS_FACTOR = 1  # a recorded thread count above cores x this is refused unless forced (--threads)


def cpu_capability() -> str:
    import torch

    getter = getattr(torch.backends.cpu, "get_cpu_capability", None)
    return str(getter()) if getter is not None else "unknown"


def environment_fingerprint(device: str = "cpu", dtype: str = "float32") -> dict[str, Any]:
    import torch

    dev = torch.device(device)
    name = platform.processor() or platform.machine()
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
    return {
        "torch": torch.__version__,
        "numpy": __import__("numpy").__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "device_type": dev.type,
        "device_name": name,
        "dtype": dtype,
        "threads": torch.get_num_threads(),
        "deterministic": bool(torch.are_deterministic_algorithms_enabled()),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "cpu_capability": cpu_capability(),
        "mkldnn": bool(torch.backends.mkldnn.enabled),
        "tf32": bool(torch.backends.cuda.matmul.allow_tf32) or bool(torch.backends.cudnn.allow_tf32),
        "dispatch_env": {k: os.environ[k] for k in DISPATCH_ENV if os.environ.get(k)},
    }


def exact_mismatches(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Names of the fields that differ and so rule out bitwise replay."""
    out = [f for f in EXACT_FIELDS if recorded.get(f) != current.get(f)]
    if (recorded.get("dispatch_env") or {}) != (current.get("dispatch_env") or {}):
        out.append("dispatch_env")
    return out


def capability_available(wanted: str, native: str) -> bool:
    """Can this CPU run torch's ``wanted`` kernel family? (Any family at or below its own.)"""
    if wanted == native:
        return True
    if wanted not in _CAPABILITY_ORDER or native not in _CAPABILITY_ORDER:
        return False
    if wanted == "DEFAULT":
        return True
    x86 = ("AVX2", "AVX512")
    return wanted in x86 and native in x86 and _CAPABILITY_ORDER.index(wanted) <= _CAPABILITY_ORDER.index(native)


@dataclass(frozen=True)
class Reproduction:
    """How this machine reproduces a recorded environment, or why it cannot.

    ``env`` are environment variables the replay processes must start with (empty when the
    current process already matches); ``threads`` the CPU thread count to replay with;
    ``blockers`` what this machine cannot reproduce (non-empty: exact replay is impossible);
    ``notes`` what was adjusted, for the report.
    """

    threads: int | None
    deterministic: bool
    env: dict[str, str] = field(default_factory=dict)
    blockers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def possible(self) -> bool:
        return not self.blockers

    @property
    def needs_subprocess(self) -> bool:
        return bool(self.env)


def reproduction(recorded: dict[str, Any], device: str, forced_threads: int | None = None,
                 cores: int | None = None) -> Reproduction:
    """Plan how to reproduce ``recorded`` on this machine with ``device`` ("cpu" or "cuda")."""
    import torch

    current = environment_fingerprint(device, str(recorded.get("dtype", "float32")))
    blockers: list[str] = []
    notes: list[str] = []
    env: dict[str, str] = {}
    for name in ("torch", "machine", "device_type", "dtype", "mkldnn", "tf32"):
        if recorded.get(name) != current.get(name):
            blockers.append(f"{name}: recorded {recorded.get(name)!r}, here {current.get(name)!r}")
    if recorded.get("device_type") == "cuda" and recorded.get("device_name") != current.get("device_name"):
        blockers.append(f"device_name: recorded {recorded.get('device_name')!r}, here {current.get('device_name')!r}")
    cores = cores or os.cpu_count() or 1
    threads: int | None = None
    wanted = recorded.get("threads")
    if forced_threads is not None:
        threads = max(1, int(forced_threads))
        if isinstance(wanted, int) and wanted != threads:
            blockers.append(f"threads: recorded {wanted}, forced {threads} with --threads")
    elif isinstance(wanted, int) and not isinstance(wanted, bool) and wanted >= 1:
        if wanted > cores * MAX_THREADS_FACTOR:
            blockers.append(f"threads: the proof was recorded with {wanted} CPU threads and this machine has {cores} "
                            f"cores (pass --threads {wanted} to replay oversubscribed)")
        else:
            threads = wanted
    elif device == "cpu":
        blockers.append(f"threads: recorded value {wanted!r} is not a thread count")
    recorded_env = dict(recorded.get("dispatch_env") or {})
    cap, native = recorded.get("cpu_capability"), cpu_capability()
    if device == "cpu" and cap != current.get("cpu_capability"):
        if isinstance(cap, str) and capability_available(cap, native):
            env["ATEN_CPU_CAPABILITY"] = cap.lower()
            notes.append(f"replaying with torch's {cap} CPU kernels (ATEN_CPU_CAPABILITY), as recorded")
        else:
            blockers.append(f"cpu_capability: recorded {cap!r}, this CPU offers {native!r}")
    for name in DISPATCH_ENV:
        if name == "ATEN_CPU_CAPABILITY":
            continue
        if recorded_env.get(name) != os.environ.get(name) and device == "cpu":
            if recorded_env.get(name):
                env[name] = str(recorded_env[name])
                notes.append(f"replaying with {name}={recorded_env[name]}, as recorded")
            else:
                blockers.append(f"dispatch_env: {name} is set here ({os.environ.get(name)!r}) but was not when "
                                "recording; unset it")
    deterministic = bool(recorded.get("deterministic", False))
    if deterministic != bool(torch.are_deterministic_algorithms_enabled()):
        notes.append(f"deterministic algorithms {'on' if deterministic else 'off'}, as recorded")
    return Reproduction(threads, deterministic, env, blockers, notes)


def apply_in_process(rep: Reproduction) -> None:
    """Set what can be set inside a running process (threads, deterministic flag)."""
    import torch

    if rep.threads is not None:
        torch.set_num_threads(rep.threads)
    torch.use_deterministic_algorithms(rep.deterministic, warn_only=False)


def pick_device(requested: str = "auto") -> str:
    """``auto`` -> CUDA when available, else CPU; an explicit ``cuda`` without CUDA is an input error."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        from pol.errors import InputError

        raise InputError("--device cuda was requested but CUDA is not available here")
    return requested
