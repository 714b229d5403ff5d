"""The digits MLP task as user-named code (--model / --data), for proofs whose model is not built in."""

from __future__ import annotations

from typing import Any

from pol.tasks import TaskData, _digits, _digits_mlp_model


def model(hidden: int = 64) -> Any:
    return _digits_mlp_model(hidden)


def data() -> TaskData:
    return _digits((64,))
