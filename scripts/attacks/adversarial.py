"""(c) Adversarial-example spoof (Zhang et al., IEEE S&P 2022), small-scale and faithful.

The attacker starts close to the stolen weights (``W0 = W + noise``; ``start="near"``, as in the
paper) or, to dodge an initialization check, at the seeded init (``start="seeded"``), and lays
the checkpoints on the straight line ``W0 -> W``. For every step it then perturbs the real
batch (``iters`` steps of Adam on the inputs, through a double backward) so that the gradient
at the current point is the one that makes SGD-with-momentum take exactly the next linear
step: with the momentum buffer ``b* = -delta/lr`` stored in each checkpoint, the wanted
gradient is ``(1 - momentum) * b*``. A verifier replaying on the *perturbed* batches would see
a small error; ``info["tolerance_distance_on_perturbed_data"]`` measures it.

Our plan commits a Merkle root over the data, so the attacker must choose:

* ``commit="perturbed"``: commit the perturbed data set. The verifier, holding the real data,
  fails ``data_commitment``.
* ``commit="real"``: keep the real root. The data check passes, and replay on the real batches
  fails.

With ``start="near"`` the ``initialization`` check fails as well (W0 is not the seeded model).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pol.schedule import lr_at
from scripts.attacks.common import (
    Forgery,
    Victim,
    as_key,
    attacker_plan,
    committed_indices,
    interpolate,
    linear_momentum,
    make_state,
    replace_dataset,
    seeded_weights,
    task_data,
    with_data_root,
    write,
)


def _near(w: dict[str, np.ndarray], seed: int, scale: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for k, v in w.items():
        if v.dtype.kind != "f":
            out[k] = v.copy()
            continue
        sd = float(np.std(v)) or 1.0
        out[k] = (v + scale * sd * rng.standard_normal(v.shape)).astype(v.dtype)
    return out


def forge(victim: Victim, out: str | os.PathLike[str], key, seed: int = 0, *, start: str = "near",
          commit: str = "perturbed", iters: int = 5, step_size: float = 0.05, noise: float = 0.2) -> Forgery:
    import torch

    from pol.tasks import build_model
    from pol.training import loss_function

    if start not in ("near", "seeded") or commit not in ("perturbed", "real"):
        raise ValueError("start is 'near' or 'seeded'; commit is 'perturbed' or 'real'")
    sk = as_key(key)
    plan = attacker_plan(victim.plan, sk, seed=seed)
    w = victim.weights
    w0 = _near(w, seed, noise) if start == "near" else seeded_weights(plan)
    n = plan.num_checkpoints - 1
    points = [interpolate(w0, w, i / n) for i in range(n)] + [w]
    hp = plan.optimizer.get("hparams") or {}
    mom = float(hp.get("momentum", 0.0) or 0.0)
    data = task_data(plan)
    x_all, y_all = (t.clone() for t in data.train.tensors)
    x_pert = x_all.clone()
    indices = committed_indices(plan)
    model = build_model(plan.model["spec"], plan.model.get("kwargs") or {})
    model.train()
    params = [p for _, p in model.named_parameters()]
    names = [n_ for n_, _ in model.named_parameters()]
    loss_fn = loss_function(plan.step["loss"]["name"])
    states = [make_state(plan, 0, w0, None)]
    fits: list[float] = []
    gen = torch.Generator().manual_seed(seed)
    buffer: dict[str, np.ndarray] | None = None
    for j in range(n):
        s0, s1 = plan.checkpoint_step(j), plan.checkpoint_step(j + 1)
        lr = lr_at(plan.lr_schedule, s0)
        target_buf = linear_momentum(plan, points[j], points[j + 1], s1 - s0, lr)
        # Simulate the attacker's own training on crafted batches from the recorded start.
        model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in points[j].items()})
        buf = {k: torch.from_numpy(v.copy()) for k, v in (buffer or {}).items()}
        for t in range(s0, s1):
            idx = torch.from_numpy(indices[t])
            x, y = x_all[idx], y_all[idx]
            want = []
            for name in names:
                b_star = torch.from_numpy(target_buf[name])
                prev = buf.get(name)
                want.append(b_star - mom * prev if prev is not None else b_star)
            delta = (0.01 * torch.randn(x.shape, generator=gen)).requires_grad_(True)
            opt = torch.optim.Adam([delta], lr=step_size)
            norm = sum(float((g * g).sum()) for g in want) or 1.0
            for _ in range(iters):
                grads = torch.autograd.grad(loss_fn(model(x + delta), y), params, create_graph=True)
                mismatch = sum(((g - g_) ** 2).sum() for g, g_ in zip(grads, want)) / norm
                opt.zero_grad()
                mismatch.backward()
                opt.step()
            xp = (x + delta).detach()
            x_pert[idx] = xp
            grads = torch.autograd.grad(loss_fn(model(xp), y), params)
            with torch.no_grad():
                for name, p, g in zip(names, params, grads):
                    b = mom * buf[name] + g if name in buf and mom else g.clone()
                    buf[name] = b
                    p -= lr * b
        end = {k: v.detach().numpy() for k, v in model.state_dict().items()}
        err = np.sqrt(sum(float(np.sum((end[k] - points[j + 1][k]) ** 2)) for k in end))
        honest = np.sqrt(sum(float(np.sum((end[k] - points[j][k]) ** 2)) for k in end))
        fits.append(err / max(honest, 1e-30))
        buffer = target_buf
        states.append(make_state(plan, s1, points[j + 1], target_buf))
    expected = {"replay"} | ({"initialization"} if start == "near" else set())
    if commit == "perturbed":
        plan = with_data_root(plan, replace_dataset(data.train, x=x_pert))
        expected |= {"data_commitment"}
    path = write(out, plan, states, indices, sk)
    return Forgery(f"adversarial-{start}-{commit}", Path(path), expected, w, trained_steps=plan.num_steps * (iters + 1),
                   info={"tolerance_distance_on_perturbed_data": float(np.median(fits)),
                         "start": start, "commit": commit})
