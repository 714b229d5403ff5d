"""Collateral: the vendor-signed TCB information and revocation list a verifier needs.

Modelled on Intel's TCB Info (per FMSPC, a list of TCB levels, highest first, each with a
``tcbStatus`` and advisory ids), its QE Identity (the quoting enclave's signer, product id and
TCB levels by ISVSVN) and the PCK CRL, in one document signed by the vendor root::

    {"body": {"schema_version": 2, "kind": "pol-tee-sim-collateral", "simulated": true,
              "issue_date": <unix s>, "next_update": <unix s>,
              "tcb_evaluation_data_number": <int, grows with every re-evaluation>,
              "tcb_info": [{"fmspc": <hex 6B>,
                            "tcb_levels": [{"cpu_svn": <hex 16B>, "pce_svn": <int>,
                                            "tcb_status": "UpToDate", "advisory_ids": []}]}],
              "qe_identity": {"mr_signer": <hex 32B>, "isv_prod_id": 1,
                              "tcb_levels": [{"isv_svn": 8, "tcb_status": "UpToDate", "advisory_ids": []}]},
              "revoked_platform_ids": [<hex 16B>, ...]},
     "signature": <hex Ed25519 over "pol-tee-sim/collateral/v2\\0" || canonical_json(body)>}

TCB level matching follows Intel: the platform's level is the first listed level whose 16
``cpu_svn`` components are all <= the platform's and whose ``pce_svn`` is <= the platform's;
the quoting enclave's level is the first whose ``isv_svn`` is <= its ``qe_svn``. A verifier
takes collateral from its own :class:`~tee_sim.collateral_store.CollateralStore`, never from
the evidence, and its policy can demand a minimum ``tcb_evaluation_data_number``.
"""

from __future__ import annotations

import dataclasses
import enum
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tee_sim._encoding import canonical_json, from_hex, require, strict_json_loads
from tee_sim.errors import CollateralFormatError
from tee_sim.keys import COLLATERAL_SIGNING_CONTEXT, QE_ISV_PROD_ID, SimulatedVendor, verify_signature

if TYPE_CHECKING:
    from tee_sim.platform import SimulatedPlatform

DEFAULT_VALIDITY_SECONDS = 30 * 24 * 3600
SCHEMA_VERSION = 2
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
        status = _status_of(require(obj, "tcb_status", str, CollateralFormatError, what), what)
        return cls(cpu_svn, pce_svn, status, _advisories(obj, what))


def _status_of(text: str, what: str) -> TcbStatus:
    try:
        return TcbStatus(text)
    except ValueError:
        raise CollateralFormatError(f"{what}: unknown tcb_status {text!r}") from None


def _advisories(obj: Any, what: str) -> tuple[str, ...]:
    advisories = require(obj, "advisory_ids", list, CollateralFormatError, what)
    if not all(isinstance(a, str) for a in advisories):
        raise CollateralFormatError(f"{what}: advisory_ids must be strings")
    return tuple(advisories)


@dataclass(frozen=True)
class QeTcbLevel:
    """One QE Identity TCB level: a quoting enclave at or above ``isv_svn`` has ``status``."""

    isv_svn: int
    status: TcbStatus
    advisory_ids: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"isv_svn": self.isv_svn, "tcb_status": self.status.value, "advisory_ids": list(self.advisory_ids)}

    @classmethod
    def from_json(cls, obj: Any) -> QeTcbLevel:
        what = "collateral qe tcb level"
        svn = require(obj, "isv_svn", int, CollateralFormatError, what)
        if not 0 <= svn <= 0xFFFF:
            raise CollateralFormatError(f"{what}: isv_svn {svn} out of range 0..65535")
        return cls(svn, _status_of(require(obj, "tcb_status", str, CollateralFormatError, what), what),
                   _advisories(obj, what))


@dataclass(frozen=True)
class QeIdentity:
    """Which quoting enclave the vendor vouches for, and the status of each of its versions."""

    mr_signer: bytes
    isv_prod_id: int
    tcb_levels: tuple[QeTcbLevel, ...]

    def level(self, qe_svn: int) -> QeTcbLevel | None:
        for level in self.tcb_levels:
            if qe_svn >= level.isv_svn:
                return level
        return None

    def to_json(self) -> dict[str, Any]:
        return {"mr_signer": self.mr_signer.hex(), "isv_prod_id": self.isv_prod_id,
                "tcb_levels": [lvl.to_json() for lvl in self.tcb_levels]}

    @classmethod
    def from_json(cls, obj: Any) -> QeIdentity:
        what = "collateral qe_identity"
        mr_signer = from_hex(require(obj, "mr_signer", str, CollateralFormatError, what), 32, CollateralFormatError,
                             what)
        prod = require(obj, "isv_prod_id", int, CollateralFormatError, what)
        if not 0 <= prod <= 0xFFFF:
            raise CollateralFormatError(f"{what}: isv_prod_id {prod} out of range 0..65535")
        levels = tuple(QeTcbLevel.from_json(lvl) for lvl in require(obj, "tcb_levels", list, CollateralFormatError,
                                                                       what))
        return cls(mr_signer, prod, levels)


def default_qe_identity(vendor: SimulatedVendor) -> QeIdentity:
    """The vendor's quoting enclave: UpToDate from qe_svn 8 (the simulated platforms' default), OutOfDate below."""
    from tee_sim.platform import DEFAULT_QE_SVN

    return QeIdentity(vendor.qe_mr_signer, QE_ISV_PROD_ID,
                      (QeTcbLevel(DEFAULT_QE_SVN, TcbStatus.UP_TO_DATE),
                       QeTcbLevel(0, TcbStatus.OUT_OF_DATE, ("POL-TEE-SIM-QE-OLD",))))


@dataclass(frozen=True)
class Collateral:
    """Parsed collateral. Its signature is checked by the verifier against the pinned root."""

    issue_date: int
    next_update: int
    tcb_info: Mapping[bytes, tuple[TcbLevel, ...]]
    qe_identity: QeIdentity
    tcb_evaluation_data_number: int = 1
    revoked_platform_ids: frozenset[bytes] = field(default_factory=frozenset)
    signature: bytes = b""

    @property
    def freshness(self) -> tuple[int, int]:
        """What a collateral store orders by: (TCB evaluation data number, issue date)."""
        return (self.tcb_evaluation_data_number, self.issue_date)

    def body_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": _KIND,
            "simulated": True,
            "issue_date": self.issue_date,
            "next_update": self.next_update,
            "tcb_evaluation_data_number": self.tcb_evaluation_data_number,
            "tcb_info": [
                {"fmspc": fmspc.hex(), "tcb_levels": [lvl.to_json() for lvl in levels]}
                for fmspc, levels in sorted(self.tcb_info.items())
            ],
            "qe_identity": self.qe_identity.to_json(),
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
        if require(body, "schema_version", int, CollateralFormatError, what) != SCHEMA_VERSION:
            raise CollateralFormatError(f"collateral: unsupported schema_version (expected {SCHEMA_VERSION})")
        issue_date = require(body, "issue_date", int, CollateralFormatError, what)
        next_update = require(body, "next_update", int, CollateralFormatError, what)
        evaluation = require(body, "tcb_evaluation_data_number", int, CollateralFormatError, what)
        if evaluation < 0:
            raise CollateralFormatError("collateral: tcb_evaluation_data_number must be >= 0")
        qe_identity = QeIdentity.from_json(require(body, "qe_identity", dict, CollateralFormatError, what))
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
        collateral = cls(issue_date, next_update, tcb_info, qe_identity, evaluation, revoked, signature)
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
    tcb_evaluation_data_number: int = 1,
    qe_identity: QeIdentity | None = None,
) -> Collateral:
    """Collateral signed by ``vendor``.

    Give ``tcb_info`` explicitly, or ``platforms``: each gets one TCB level at exactly its own
    ``cpu_svn``/``pce_svn`` with ``status`` (default UpToDate) and ``advisory_ids``. The QE
    identity defaults to :func:`default_qe_identity`; a vendor raises
    ``tcb_evaluation_data_number`` with every re-evaluation (revocation, new advisory).
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
        qe_identity=qe_identity or default_qe_identity(vendor),
        tcb_evaluation_data_number=int(tcb_evaluation_data_number),
        revoked_platform_ids=frozenset(revoked_platform_ids),
    )
    return dataclasses.replace(unsigned, signature=vendor.sign(unsigned.signed_bytes()))


__all__ = ["Collateral", "QeIdentity", "QeTcbLevel", "TcbLevel", "TcbStatus", "default_qe_identity",
           "issue_collateral"]
