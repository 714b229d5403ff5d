"""Collateral: the vendor-signed TCB information and revocation list a verifier needs.

Modelled on Intel's TCB Info (per FMSPC, a list of TCB levels, highest first, each with a
``tcbStatus`` and advisory ids) and the PCK CRL, in one document signed by the vendor root::

    {"body": {"schema_version": 1, "kind": "pol-tee-sim-collateral", "simulated": true,
              "issue_date": <unix s>, "next_update": <unix s>,
              "tcb_info": [{"fmspc": <hex 6B>,
                            "tcb_levels": [{"cpu_svn": <hex 16B>, "pce_svn": <int>,
                                            "tcb_status": "UpToDate", "advisory_ids": []}]}],
              "revoked_platform_ids": [<hex 16B>, ...]},
     "signature": <hex Ed25519 over "pol-tee-sim/collateral/v1\\0" || canonical_json(body)>}

TCB level matching follows Intel: the platform's level is the first listed level whose 16
``cpu_svn`` components are all <= the platform's and whose ``pce_svn`` is <= the platform's.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tee_sim._encoding import canonical_json, from_hex, require, strict_json_loads
from tee_sim.errors import CollateralFormatError
from tee_sim.keys import COLLATERAL_SIGNING_CONTEXT, SimulatedVendor, verify_signature

if TYPE_CHECKING:
    from tee_sim.platform import SimulatedPlatform

DEFAULT_VALIDITY_SECONDS = 30 * 24 * 3600
_KIND = "pol-tee-sim-collateral"


class TcbStatus(str, enum.Enum):
    """Intel's ``tcbStatus`` values."""

    UP_TO_DATE = "UpToDate"
    SW_HARDENING_NEEDED = "SWHardeningNeeded"
    CONFIGURATION_NEEDED = "ConfigurationNeeded"
    CONFIGURATION_AND_SW_HARDENING_NEEDED = "ConfigurationAndSWHardeningNeeded"
    OUT_OF_DATE = "OutOfDate"
    OUT_OF_DATE_CONFIGURATION_NEEDED = "OutOfDateConfigurationNeeded"
    REVOKED = "Revoked"


@dataclass(frozen=True)
class TcbLevel:
    """One TCB level: a platform at or above these SVNs has ``status``."""

    cpu_svn: bytes
    pce_svn: int
    status: TcbStatus
    advisory_ids: tuple[str, ...] = ()

    def matches(self, cpu_svn: bytes, pce_svn: int) -> bool:
        return all(p >= lvl for p, lvl in zip(cpu_svn, self.cpu_svn)) and pce_svn >= self.pce_svn

    def to_json(self) -> dict[str, Any]:
        return {
            "cpu_svn": self.cpu_svn.hex(),
            "pce_svn": self.pce_svn,
            "tcb_status": self.status.value,
            "advisory_ids": list(self.advisory_ids),
        }

    @classmethod
    def from_json(cls, obj: Any) -> TcbLevel:
        what = "collateral tcb level"
        cpu_svn = from_hex(require(obj, "cpu_svn", str, CollateralFormatError, what), 16, CollateralFormatError, what)
        pce_svn = require(obj, "pce_svn", int, CollateralFormatError, what)
        if not 0 <= pce_svn <= 0xFFFF:
            raise CollateralFormatError(f"{what}: pce_svn {pce_svn} out of range 0..65535")
        status_text = require(obj, "tcb_status", str, CollateralFormatError, what)
        try:
            status = TcbStatus(status_text)
        except ValueError:
            raise CollateralFormatError(f"{what}: unknown tcb_status {status_text!r}") from None
        advisories = require(obj, "advisory_ids", list, CollateralFormatError, what)
        if not all(isinstance(a, str) for a in advisories):
            raise CollateralFormatError(f"{what}: advisory_ids must be strings")
        return cls(cpu_svn, pce_svn, status, tuple(advisories))


@dataclass(frozen=True)
class Collateral:
    """Parsed collateral. Its signature is checked by the verifier against the pinned root."""

    issue_date: int
    next_update: int
    tcb_info: Mapping[bytes, tuple[TcbLevel, ...]]
    revoked_platform_ids: frozenset[bytes] = field(default_factory=frozenset)
    signature: bytes = b""

    def body_json(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "kind": _KIND,
            "simulated": True,
            "issue_date": self.issue_date,
            "next_update": self.next_update,
            "tcb_info": [
                {"fmspc": fmspc.hex(), "tcb_levels": [lvl.to_json() for lvl in levels]}
                for fmspc, levels in sorted(self.tcb_info.items())
            ],
            "revoked_platform_ids": sorted(pid.hex() for pid in self.revoked_platform_ids),
        }

    def signed_bytes(self) -> bytes:
        return COLLATERAL_SIGNING_CONTEXT + canonical_json(self.body_json())

    def verify(self, root_public_key: bytes) -> bool:
        """True when the vendor root ``root_public_key`` signed this collateral."""
        return verify_signature(root_public_key, self.signed_bytes(), self.signature)

    def tcb_level(self, fmspc: bytes, cpu_svn: bytes, pce_svn: int) -> TcbLevel | None:
        """The platform's TCB level, or None if its FMSPC or TCB is not listed."""
        for level in self.tcb_info.get(fmspc, ()):
            if level.matches(cpu_svn, pce_svn):
                return level
        return None

    def to_bytes(self) -> bytes:
        """The signed document as canonical JSON bytes."""
        return canonical_json({"body": self.body_json(), "signature": self.signature.hex()})

    @classmethod
    def from_bytes(cls, data: bytes | str) -> Collateral:
        """Parse untrusted collateral JSON; raise CollateralFormatError if malformed."""
        doc = strict_json_loads(data, CollateralFormatError, "collateral")
        what = "collateral"
        body = require(doc, "body", dict, CollateralFormatError, what)
        signature = from_hex(require(doc, "signature", str, CollateralFormatError, what), 64, CollateralFormatError,
                             "collateral signature")
        if require(body, "kind", str, CollateralFormatError, what) != _KIND:
            raise CollateralFormatError(f"collateral: kind is not {_KIND!r}")
        if require(body, "schema_version", int, CollateralFormatError, what) != 1:
            raise CollateralFormatError("collateral: unsupported schema_version (expected 1)")
        issue_date = require(body, "issue_date", int, CollateralFormatError, what)
        next_update = require(body, "next_update", int, CollateralFormatError, what)
        tcb_info: dict[bytes, tuple[TcbLevel, ...]] = {}
        for entry in require(body, "tcb_info", list, CollateralFormatError, what):
            fmspc = from_hex(require(entry, "fmspc", str, CollateralFormatError, what), 6, CollateralFormatError,
                             "collateral fmspc")
            if fmspc in tcb_info:
                raise CollateralFormatError(f"collateral: fmspc {fmspc.hex()} listed twice")
            levels = require(entry, "tcb_levels", list, CollateralFormatError, what)
            tcb_info[fmspc] = tuple(TcbLevel.from_json(lvl) for lvl in levels)
        revoked = frozenset(
            from_hex(pid, 16, CollateralFormatError, "collateral revoked platform id")
            for pid in require(body, "revoked_platform_ids", list, CollateralFormatError, what)
        )
        collateral = cls(issue_date, next_update, tcb_info, revoked, signature)
        if canonical_json(collateral.body_json()) != canonical_json(body):
            raise CollateralFormatError(
                "collateral: body is not in canonical form (unexpected fields, duplicates, or unsorted lists)"
            )
        return collateral


def issue_collateral(
    vendor: SimulatedVendor,
    *,
    platforms: Iterable[SimulatedPlatform] = (),
    tcb_info: Mapping[bytes, Sequence[TcbLevel]] | None = None,
    status: TcbStatus = TcbStatus.UP_TO_DATE,
    advisory_ids: Sequence[str] = (),
    revoked_platform_ids: Iterable[bytes] = (),
    issue_date: int | None = None,
    next_update: int | None = None,
) -> Collateral:
    """Collateral signed by ``vendor``.

    Give ``tcb_info`` explicitly, or ``platforms``: each gets one TCB level at exactly its own
    ``cpu_svn``/``pce_svn`` with ``status`` (default UpToDate) and ``advisory_ids``.
    """
    info: dict[bytes, list[TcbLevel]] = {k: list(v) for k, v in (tcb_info or {}).items()}
    for platform in platforms:
        level = TcbLevel(platform.cpu_svn, platform.pce_svn, TcbStatus(status), tuple(advisory_ids))
        info.setdefault(platform.fmspc, []).append(level)
    now = int(time.time()) if issue_date is None else int(issue_date)
    unsigned = Collateral(
        issue_date=now,
        next_update=now + DEFAULT_VALIDITY_SECONDS if next_update is None else int(next_update),
        tcb_info={k: tuple(v) for k, v in info.items()},
        revoked_platform_ids=frozenset(revoked_platform_ids),
    )
    return Collateral(
        unsigned.issue_date,
        unsigned.next_update,
        unsigned.tcb_info,
        unsigned.revoked_platform_ids,
        vendor.sign(unsigned.signed_bytes()),
    )


__all__ = ["Collateral", "TcbLevel", "TcbStatus", "issue_collateral"]
