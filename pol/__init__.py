"""proof-of-learning: record a signed, hash-chained proof while you train; verify it by replay.

Record around your own loop::

    import pol, torch
    with pol.Recorder("run.pol.h5", key="keys/trainer.key", every=10, seed=0,
                      task="digits-mlp", epochs=1) as rec:
        model, opt, loader = rec.attach(
            model=None,                                   # built from the seed
            optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
            data_loader=torch.utils.data.DataLoader(pol.load_data("digits-mlp").train, batch_size=32))
        for x, y in loader:
            opt.zero_grad(); torch.nn.functional.cross_entropy(model(x), y).backward(); opt.step()

Verify::

    import verifier
    report = verifier.verify("run.pol.h5", public_key="keys/trainer.pub")
    print(report.verdict)        # "verified" | "rejected"

Keys: ``pol.generate_keypair("keys/trainer")``. File format: docs/FORMAT.md.
"""

from pol.errors import (
    BadSignatureError,
    DataUnavailableError,
    InputError,
    KeyFileError,
    OutputExistsError,
    PlanError,
    PolError,
    ProofFormatError,
)
from pol.keys import fingerprint, generate_keypair
from pol.proof_file import ProofReader
from pol.recorder import Recorder
from pol.runner import train_task
from pol.tasks import TASKS, load_data, seeded_model

__all__ = [
    "Recorder",
    "train_task",
    "ProofReader",
    "generate_keypair",
    "fingerprint",
    "load_data",
    "seeded_model",
    "TASKS",
    "PolError",
    "InputError",
    "ProofFormatError",
    "KeyFileError",
    "DataUnavailableError",
    "OutputExistsError",
    "PlanError",
    "BadSignatureError",
]
