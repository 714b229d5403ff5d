"""The verifier's attestation policy, and the policy file that also pins the vendor root.

Measurements are pinned by default: a policy must list at least one allowed ``mr_enclave``
or ``mr_signer``. Accepting any code needs ``allow_any_measurement=True``, which warns on
construction and shows up as a ``measurement`` check whose detail says so in every report.

Policy file (JSON)::

    {"schema_version": 1,
     "root_public_key": <hex 32B, the pinned vendor root>,
     "allowed_tcb_statuses": ["UpToDate"],
     "allowed_mr_enclave": [<hex 32B>, ...], "allowed_mr_signer": [<hex 32B>, ...],
     "isv_prod_id": <int or null>, "min_isv_svn": 0,
     "allow_debug": false, "allow_any_measurement": false,
     "max_clock_skew_seconds": 60, "require_hardware": false,
     "min_tcb_evaluation_data_number": 0, "min_collateral_issue_date": 0}

``require_hardware`` rejects every quote this package can parse (they are all simulated);
``min_tcb_evaluation_data_number`` / ``min_collateral_issue_date`` refuse collateral older
than the verifier's floor, as DCAP's TCB evaluation data number does.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tee_sim._encoding import from_hex, require, strict_json_loads
from tee_sim.collateral import TcbStatus
from tee_sim.errors import PolicyError

_FIELDS = {
    "schema_version",
    "root_public_key",
    "allowed_tcb_statuses",
    "allowed_mr_enclave",
    "allowed_mr_signer",
    "isv_prod_id",
    "min_isv_svn",
    "allow_debug",
    "allow_any_measurement",
    "max_clock_skew_seconds",
    "require_hardware",
    "min_tcb_evaluation_data_number",
    "min_collateral_issue_date",
}


class UnsafePolicyWarning(UserWarning):
    """A policy accepts any enclave measurement."""


@dataclass(frozen=True)
class AttestationPolicy:
    """What the verifier accepts. Defaults are strict: UpToDate only, no debug.

    Sets may be given as any set; they are stored as frozensets.
    """

    allowed_mr_enclave: AbstractSet[bytes] = field(default_factory=frozenset)
    allowed_mr_signer: AbstractSet[bytes] = field(default_factory=frozenset)
    allowed_tcb_statuses: AbstractSet[TcbStatus] = frozenset({TcbStatus.UP_TO_DATE})
    min_isv_svn: int = 0
    isv_prod_id: int | None = None
    allow_debug: bool = False
    allow_any_measurement: bool = False
    max_clock_skew_seconds: int = 60
    require_hardware: bool = False
    min_tcb_evaluation_data_number: int = 0
    min_collateral_issue_date: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_mr_enclave", frozenset(bytes(m) for m in self.allowed_mr_enclave))
        object.__setattr__(self, "allowed_mr_signer", frozenset(bytes(m) for m in self.allowed_mr_signer))
        try:
            statuses = frozenset(TcbStatus(s) for s in self.allowed_tcb_statuses)
        except ValueError as exc:
            raise PolicyError(f"policy: {exc}; expected one of {[s.value for s in TcbStatus]}") from None
        object.__setattr__(self, "allowed_tcb_statuses", statuses)
        for name, values in (("allowed_mr_enclave", self.allowed_mr_enclave), ("allowed_mr_signer",
                                                                               self.allowed_mr_signer)):
            bad = [v for v in values if len(v) != 32]
            if bad:
                raise PolicyError(f"policy: {name} entries must be 32 bytes, found {len(bad[0])}")
        if not statuses:
            raise PolicyError("policy: allowed_tcb_statuses is empty, so nothing could ever be accepted")
        if TcbStatus.REVOKED in statuses:
            raise PolicyError("policy: allowing tcb status 'Revoked' is refused")
        if not 0 <= self.min_isv_svn <= 0xFFFF:
            raise PolicyError(f"policy: min_isv_svn {self.min_isv_svn} out of range 0..65535")
        if self.isv_prod_id is not None and not 0 <= self.isv_prod_id <= 0xFFFF:
            raise PolicyError(f"policy: isv_prod_id {self.isv_prod_id} out of range 0..65535")
        if self.max_clock_skew_seconds < 0:
            raise PolicyError("policy: max_clock_skew_seconds must be >= 0")
        if self.min_tcb_evaluation_data_number < 0 or self.min_collateral_issue_date < 0:
            raise PolicyError("policy: min_tcb_evaluation_data_number and min_collateral_issue_date must be >= 0")
        if not self.allowed_mr_enclave and not self.allowed_mr_signer:
            if not self.allow_any_measurement:
                raise PolicyError(
                    "policy: pins no measurement (allowed_mr_enclave and allowed_mr_signer are both "
                    "empty); list the code you trust, or set allow_any_measurement=true to accept ANY "
                    "code (unsafe)"
                )
            warnings.warn(
                "attestation policy accepts ANY enclave measurement (allow_any_measurement=True): "
                "the quote proves nothing about which code ran",
                UnsafePolicyWarning,
                stacklevel=3,
            )
        elif self.allow_any_measurement:
            raise PolicyError("policy: allow_any_measurement=true contradicts the pinned measurements; drop one")

    @property
    def pins_measurement(self) -> bool:
        return bool(self.allowed_mr_enclave or self.allowed_mr_signer)

    def to_json(self) -> dict[str, Any]:
        return {
            "allowed_tcb_statuses": sorted(s.value for s in self.allowed_tcb_statuses),
            "allowed_mr_enclave": sorted(m.hex() for m in self.allowed_mr_enclave),
            "allowed_mr_signer": sorted(m.hex() for m in self.allowed_mr_signer),
            "isv_prod_id": self.isv_prod_id,
            "min_isv_svn": self.min_isv_svn,
            "allow_debug": self.allow_debug,
            "allow_any_measurement": self.allow_any_measurement,
            "max_clock_skew_seconds": self.max_clock_skew_seconds,
            "require_hardware": self.require_hardware,
            "min_tcb_evaluation_data_number": self.min_tcb_evaluation_data_number,
            "min_collateral_issue_date": self.min_collateral_issue_date,
        }

    @classmethod
    def from_json(cls, obj: Any) -> AttestationPolicy:
        """Build a policy from a parsed JSON object (strict: unknown fields are errors)."""
        what = "policy"
        if not isinstance(obj, dict):
            raise PolicyError(f"policy: expected a JSON object, found {type(obj).__name__}")
        unknown = set(obj) - _FIELDS
        if unknown:
            raise PolicyError(f"policy: unknown fields {sorted(unknown)} (typo?)")

        def hex_list(key: str) -> list[bytes]:
            values = obj.get(key, [])
            if not isinstance(values, list):
                raise PolicyError(f"policy: {key} must be a list of hex strings")
            return [from_hex(v, 32, PolicyError, f"policy {key}") for v in values]

        statuses = obj.get("allowed_tcb_statuses", [TcbStatus.UP_TO_DATE.value])
        if not isinstance(statuses, list) or not all(isinstance(s, str) for s in statuses):
            raise PolicyError("policy: allowed_tcb_statuses must be a list of strings")
        prod = obj.get("isv_prod_id")
        if prod is not None:
            prod = require(obj, "isv_prod_id", int, PolicyError, what)

        def optional(key: str, kind: type, default: Any) -> Any:
            return require(obj, key, kind, PolicyError, what) if key in obj else default

        return cls(
            allowed_mr_enclave=frozenset(hex_list("allowed_mr_enclave")),
            allowed_mr_signer=frozenset(hex_list("allowed_mr_signer")),
            allowed_tcb_statuses=frozenset(statuses),  # type: ignore[arg-type]  # validated in __post_init__
            min_isv_svn=optional("min_isv_svn", int, 0),
            isv_prod_id=prod,
            allow_debug=optional("allow_debug", bool, False),
            allow_any_measurement=optional("allow_any_measurement", bool, False),
            max_clock_skew_seconds=optional("max_clock_skew_seconds", int, 60),
            require_hardware=optional("require_hardware", bool, False),
            min_tcb_evaluation_data_number=optional("min_tcb_evaluation_data_number", int, 0),
            min_collateral_issue_date=optional("min_collateral_issue_date", int, 0),
        )


def write_policy_file(path: str | os.PathLike[str], *, root_public_key: bytes, policy: AttestationPolicy) -> None:
    """Write a policy file that pins ``root_public_key`` and ``policy``."""
    if len(root_public_key) != 32:
        raise PolicyError(f"root_public_key must be 32 bytes, found {len(root_public_key)}")
    doc = {"schema_version": 1, "root_public_key": bytes(root_public_key).hex(), **policy.to_json()}
    Path(path).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def read_policy_file(path: str | os.PathLike[str]) -> tuple[bytes, AttestationPolicy]:
    """(pinned root public key, policy) from a policy file; PolicyError if malformed."""
    from pol.smallfiles import JSON_FILE_BYTES, read_small_file

    raw = read_small_file(path, JSON_FILE_BYTES, "policy file", PolicyError)
    obj = strict_json_loads(raw, PolicyError, f"policy file {path}")
    if require(obj, "schema_version", int, PolicyError, "policy") != 1:
        raise PolicyError("policy: unsupported schema_version (expected 1)")
    root = from_hex(require(obj, "root_public_key", str, PolicyError, "policy"), 32, PolicyError,
                    "policy root_public_key")
    return root, AttestationPolicy.from_json(obj)


__all__ = ["AttestationPolicy", "UnsafePolicyWarning", "read_policy_file", "write_policy_file"]
