"""Verification of split-learning pipelines (docs/SPLIT.md).

    from verifier.split import verify_pipeline
    report = verify_pipeline("run", keys="keys")          # every node, and the messages between them
    print(report.verdict, report.blamed)                   # "verified" [] | "rejected" [1]

``verify_node`` judges one node from its own proof plus its neighbours' recorded headers (no
other stage's weights; data only for the owners).
"""

from verifier.split.api import SplitVerifyOptions, neighbour_headers, open_run, verify_node, verify_pipeline
from verifier.split.report import PipelineReport

__all__ = ["SplitVerifyOptions", "verify_pipeline", "verify_node", "neighbour_headers", "open_run", "PipelineReport"]
