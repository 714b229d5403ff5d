"""The malformed-input harness behind ``scripts/fuzz_inputs.py`` (see docs/SECURITY.md, Fuzzing).

* :mod:`scripts.fuzz.runner` runs one ``pol`` command per case in its own process, with a
  timeout and a memory limit, and classifies the outcome;
* :mod:`scripts.fuzz.corpus` builds the honest inputs every mutation starts from;
* :mod:`scripts.fuzz.proofs` and :mod:`scripts.fuzz.inputs` generate the cases, per input kind;
* :mod:`scripts.fuzz.content` tells bytes that carry meaning from bytes nothing reads (bit flips).
"""
