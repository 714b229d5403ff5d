"""What a proof leaks: membership inference from checkpoints, label leakage across split nodes.

Modules (each one job; ``scripts/bench_privacy.py`` runs them and prints the figures):

* :mod:`scripts.privacy.data` — the digits universe and member / non-member splits (a data
  builder the Recorder and the verifier name as ``scripts.privacy.data:digits_members``);
* :mod:`scripts.privacy.metrics` — AUC, TPR - FPR advantage (best threshold, and cross-fitted),
  hierarchical bootstrap confidence intervals;
* :mod:`scripts.privacy.runs` — training configuration, recorded target runs (full and compact
  proofs, challenge / response) and the attacker's shadow runs;
* :mod:`scripts.privacy.views` — what each access level exposes: final weights, a full proof,
  a compact proof plus the challenged segments, commitments only;
* :mod:`scripts.privacy.mia` — membership-inference attacks over those views;
* :mod:`scripts.privacy.label_leakage` — label-inference attacks over the gradients a
  non-label node receives at a cut layer (norm, cosine; Li et al. 2022);
* :mod:`scripts.privacy.split_sim` — an in-process two-party split (plain and U-shaped) of
  a digits MLP that produces those gradients, with optional committed-seed gradient noise.

See docs/PRIVACY.md for the threat model and the measured figures.
"""
