"""Framework integrations: record a proof from a training loop a framework runs.

- :mod:`pol.integrations.lightning`: a Lightning callback (``lightning`` extra);
- :mod:`pol.integrations.hf`: a Hugging Face ``Trainer`` that records (``hf`` extra);
- :mod:`pol.integrations.accelerate`: a helper for plain loops prepared by Accelerate (``hf`` extra).

Each reads what the framework will do (clipping, mixed precision, gradient accumulation, the
learning-rate schedule), commits it to the plan, takes over what the recorder must own (the batch
order, the clipping, the learning rate), and refuses with one line, before step 0, what it cannot
record. docs/INTEGRATIONS.md has the code a user writes and the full list of checks.
"""
