"""Verify proofs of learning.

::

    import verifier
    report = verifier.verify("run.pol.h5", public_key="keys/trainer.pub")
    report.verdict          # "verified" | "rejected" | "self-asserted" | "incomplete"
    report.exit_code        # 0 only when verified
    print(report.to_json())

Options (:class:`VerifyOptions`): segments, confidence + forged_fraction, device, mode, the user's
own model/data/loss code for custom tasks, workers. Published weights: :func:`verify_published`.
"""

from verifier.api import VerifyOptions, verify
from verifier.published import verify_published
from verifier.report import Check, Report

__all__ = ["verify", "VerifyOptions", "verify_published", "Report", "Check"]
