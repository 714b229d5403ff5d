"""BLS12-381 G1 arithmetic on plain Python integers (the reference backend's engine).

Points cross this module as affine tuples ``(x, y)`` of ints, with ``None`` for the point at
infinity. Inside, sums run in Jacobian coordinates (``(X, Y, Z)``, ``Z == 0`` is infinity) or
in batches of affine additions that share one modular inversion (Montgomery's trick), which
is what makes a pure-Python multi-scalar multiplication tolerable. py-ecc's field objects are
deliberately not used here: they cost a Python object per operation.

Nothing here is constant-time. The secret scalars of a sigma protocol are multiplied here on
the reference backend; treat that as a known limitation (docs/ZK.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from operator import itemgetter

import numpy as np

from zk.backend import CURVE_ORDER as R

P = 0x1A0111EA397FE69A4B1BA7B6434BACD764774B84F38512BF6730D2A0F6B0F6241EABFFFEB153FFFFB9FEFFFFFFFFAAAB
B = 4
G1_X = 0x17F1D3A73197D7942695638C4FA9AC0FC3688C4F9774B905A14E3A3F171BAC586C55E83FF97A1AEFFB3AF00ADB22C6BB
G1_Y = 0x08B3F481E3AAA0F1A09E30ED741D8AE4FCF5E095D5D00AF600DB18CB2C04B3EDD03CC744A2888AE40CAA232946C5E7E1
G1_GEN: tuple[int, int] = (G1_X, G1_Y)
_HALF_P = (P - 1) // 2
_SQRT_EXP = (P + 1) // 4

Affine = "tuple[int, int] | None"
Jac = tuple[int, int, int]
_JINF: Jac = (1, 1, 0)


# --------------------------------------------------------------------------- basic ops


def is_on_curve(pt: tuple[int, int] | None) -> bool:
    if pt is None:
        return True
    x, y = pt
    if not (0 <= x < P and 0 <= y < P):
        return False
    return (y * y - x * x * x - B) % P == 0


def neg(pt: tuple[int, int] | None) -> tuple[int, int] | None:
    if pt is None:
        return None
    return (pt[0], (P - pt[1]) % P)


def to_jac(pt: tuple[int, int] | None) -> Jac:
    if pt is None:
        return _JINF
    return (pt[0], pt[1], 1)


def to_affine(j: Jac) -> tuple[int, int] | None:
    X, Y, Z = j
    if Z % P == 0:
        return None
    zi = pow(Z, -1, P)
    zi2 = zi * zi % P
    return (X * zi2 % P, Y * zi2 * zi % P)


def jdouble(j: Jac) -> Jac:
    X, Y, Z = j
    if Z == 0 or Y == 0:
        return _JINF
    A = X * X % P
    Bv = Y * Y % P
    C = Bv * Bv % P
    t = X + Bv
    D = 2 * (t * t - A - C) % P
    E = 3 * A % P
    F = E * E % P
    X3 = (F - 2 * D) % P
    Y3 = (E * (D - X3) - 8 * C) % P
    Z3 = 2 * Y * Z % P
    return (X3, Y3, Z3)


def jadd_mixed(j: Jac, q: tuple[int, int] | None) -> Jac:
    """Jacobian + affine (madd-2007-bl)."""
    if q is None:
        return j
    X1, Y1, Z1 = j
    if Z1 == 0:
        return (q[0], q[1], 1)
    x2, y2 = q
    Z1Z1 = Z1 * Z1 % P
    U2 = x2 * Z1Z1 % P
    S2 = y2 * Z1 % P * Z1Z1 % P
    H = (U2 - X1) % P
    rr = 2 * (S2 - Y1) % P
    if H == 0:
        if rr == 0:
            return jdouble(j)
        return _JINF
    HH = H * H % P
    I4 = 4 * HH % P
    J = H * I4 % P
    V = X1 * I4 % P
    X3 = (rr * rr - J - 2 * V) % P
    Y3 = (rr * (V - X3) - 2 * Y1 * J) % P
    Z3 = ((Z1 + H) ** 2 - Z1Z1 - HH) % P
    return (X3, Y3, Z3)


def jadd(j1: Jac, j2: Jac) -> Jac:
    """Jacobian + Jacobian (add-2007-bl)."""
    X1, Y1, Z1 = j1
    X2, Y2, Z2 = j2
    if Z1 == 0:
        return j2
    if Z2 == 0:
        return j1
    Z1Z1 = Z1 * Z1 % P
    Z2Z2 = Z2 * Z2 % P
    U1 = X1 * Z2Z2 % P
    U2 = X2 * Z1Z1 % P
    S1 = Y1 * Z2 % P * Z2Z2 % P
    S2 = Y2 * Z1 % P * Z1Z1 % P
    H = (U2 - U1) % P
    rr = 2 * (S2 - S1) % P
    if H == 0:
        if rr == 0:
            return jdouble(j1)
        return _JINF
    I4 = 4 * H * H % P
    J = H * I4 % P
    V = U1 * I4 % P
    X3 = (rr * rr - J - 2 * V) % P
    Y3 = (rr * (V - X3) - 2 * S1 * J) % P
    Z3 = ((Z1 + Z2) ** 2 - Z1Z1 - Z2Z2) * H % P
    return (X3, Y3, Z3)


def add(a: tuple[int, int] | None, b: tuple[int, int] | None) -> tuple[int, int] | None:
    if a is None:
        return b
    if b is None:
        return a
    return to_affine(jadd_mixed(to_jac(a), b))


def mul_raw(pt: tuple[int, int] | None, k: int) -> tuple[int, int] | None:
    """``k * pt`` for any integer ``k`` (not reduced mod r; used by the subgroup check)."""
    if pt is None or k == 0:
        return None
    if k < 0:
        pt, k = neg(pt), -k
    acc = _JINF
    for bit in bin(k)[2:]:
        acc = jdouble(acc)
        if bit == "1":
            acc = jadd_mixed(acc, pt)
    return to_affine(acc)


def mul(pt: tuple[int, int] | None, k: int) -> tuple[int, int] | None:
    k %= R
    if k > R // 2:  # shorter chain for the negation
        return mul_raw(neg(pt), R - k)
    return mul_raw(pt, k)


# GLV endomorphism phi(x, y) = (BETA * x, y) acts on G1 as multiplication by -z^2 (z the
# BLS parameter). Scott, "A note on group membership tests for G1, G2 and GT on BLS
# pairing-friendly curves" (2021): P is in G1 iff phi(P) == -z^2 * P. The scalar has 128 bits
# and low Hamming weight, about 2.5x cheaper than multiplying by r (tests cross-check both).
_Z = -0xD201000000010000
_BETA = 0x5F19672FDF76CE51BA69C6076A0F77EADDB3A93BE6F89688DE17D813620A00022E01FFFFFFFEFFFE
_MINUS_Z2 = -(_Z * _Z)


def in_subgroup_slow(pt: tuple[int, int] | None) -> bool:
    """Reference membership test: ``r * P == O``."""
    return mul_raw(pt, R) is None


def in_subgroup(pt: tuple[int, int] | None) -> bool:
    """Membership in the order-r subgroup for a point already known to be on the curve."""
    if pt is None:
        return True
    return mul_raw(pt, _MINUS_Z2) == (_BETA * pt[0] % P, pt[1])


# --------------------------------------------------------------------------- encoding


def compress(pt: tuple[int, int] | None) -> bytes:
    """ZCash/IETF compressed encoding (48 bytes), as py-ecc and arkworks write it."""
    if pt is None:
        return b"\xc0" + bytes(47)
    x, y = pt
    flags = 0x80 | (0x20 if y > _HALF_P else 0)
    raw = bytearray(x.to_bytes(48, "big"))
    raw[0] |= flags
    return bytes(raw)


def decompress(data: bytes) -> tuple[int, int] | None:
    """Decode 48 compressed bytes; raises ValueError if malformed, off-curve or outside G1."""
    if len(data) != 48:
        raise ValueError(f"a compressed G1 point is 48 bytes, got {len(data)}")
    first = data[0]
    c_flag, inf_flag, sign_flag = first & 0x80, first & 0x40, first & 0x20
    if not c_flag:
        raise ValueError("compression flag not set")
    if inf_flag:
        if sign_flag or (first & 0x1F) or any(data[1:]):
            raise ValueError("non-canonical encoding of the point at infinity")
        return None
    x = int.from_bytes(bytes([first & 0x1F]) + data[1:], "big")
    if x >= P:
        raise ValueError("x coordinate is not a field element (>= p)")
    rhs = (x * x * x + B) % P
    y = pow(rhs, _SQRT_EXP, P)
    if y * y % P != rhs:
        raise ValueError("point is not on the curve y^2 = x^3 + 4")
    if (y > _HALF_P) != bool(sign_flag):
        y = P - y
    pt = (x, y)
    if not in_subgroup(pt):
        raise ValueError("point is on the curve but not in the prime-order subgroup")
    return pt


def xy_bytes(pt: tuple[int, int]) -> bytes:
    return pt[0].to_bytes(48, "big") + pt[1].to_bytes(48, "big")


def points_from_xy(buf: bytes | memoryview, count: int) -> list[tuple[int, int]]:
    """Parse ``count`` trusted 96-byte big-endian affine points (generator cache)."""
    data = bytes(buf)
    fb = int.from_bytes
    return [(fb(data[o : o + 48], "big"), fb(data[o + 48 : o + 96], "big")) for o in range(0, 96 * count, 96)]


# --------------------------------------------------------------------------- batched sums


def batch_inverse(vals: list[int]) -> list[int]:
    n = len(vals)
    prefix = [0] * n
    acc = 1
    for i, v in enumerate(vals):
        prefix[i] = acc
        acc = acc * v % P
    inv = pow(acc, -1, P)
    out = [0] * n
    for i in range(n - 1, -1, -1):
        out[i] = prefix[i] * inv % P
        inv = inv * vals[i] % P
    return out


def batch_to_affine(js: Sequence[Jac]) -> list[tuple[int, int] | None]:
    idx = [i for i, j in enumerate(js) if j[2] % P]
    out: list[tuple[int, int] | None] = [None] * len(js)
    if not idx:
        return out
    invs = batch_inverse([js[i][2] for i in idx])
    for i, zi in zip(idx, invs):
        X, Y, _ = js[i]
        zi2 = zi * zi % P
        out[i] = (X * zi2 % P, Y * zi2 * zi % P)
    return out


def _gather(seq: Sequence, idx: list[int]) -> list:
    """``[seq[i] for i in idx]`` at C speed."""
    if not idx:
        return []
    if len(idx) == 1:
        return [seq[idx[0]]]
    return list(itemgetter(*idx)(seq))


def _pair_sums(
    xa: list[int], ya: list[int], xb: list[int], yb: list[int]
) -> tuple[list[int], list[int]]:
    """Affine ``(xa, ya) + (xb, yb)`` element-wise, all distinct x, one shared inversion."""
    p = P
    dens = [b - a for a, b in zip(xa, xb)]
    pref = []
    acc = 1
    for d in dens:
        pref.append(acc)
        acc = acc * d % p
    inv = pow(acc, -1, p)
    out_x: list[int] = []
    out_y: list[int] = []
    for d, pr, x1, y1, x2, y2 in zip(reversed(dens), reversed(pref), reversed(xa), reversed(ya), reversed(xb),
                                     reversed(yb)):
        lam = (y2 - y1) * (pr * inv % p) % p
        inv = inv * d % p
        x3 = (lam * lam - x1 - x2) % p
        out_x.append(x3)
        out_y.append((lam * (x1 - x3) - y1) % p)
    out_x.reverse()
    out_y.reverse()
    return out_x, out_y


def accumulate_buckets(
    keys: np.ndarray, xs: list[int], ys: list[int]
) -> tuple[np.ndarray, list[int | None], list[int]]:
    """Sum affine points that share a bucket key.

    ``keys`` must be sorted (int64). Returns ``(keys, xs, ys)`` with one entry per distinct key
    (``xs[i] is None`` marks a bucket that summed to infinity). Each round adds adjacent pairs in
    the same bucket with one shared inversion, halving every bucket, so a bucket of ``m`` points
    costs ``m - 1`` affine additions at about six modular multiplications each.
    """
    keys = np.asarray(keys, dtype=np.int64)
    has_inf = False
    while len(keys) > 1:
        n = len(keys)
        change = keys[1:] != keys[:-1]
        if change.all():
            break
        starts = np.flatnonzero(np.concatenate(([True], change)))
        run_id = np.cumsum(np.concatenate(([False], change)))
        pos = np.arange(n) - starts[run_id]
        evens = np.flatnonzero(pos % 2 == 0)
        nxt = evens + 1
        is_pair = np.zeros(len(evens), dtype=bool)
        inside = nxt < n
        is_pair[inside] = keys[nxt[inside]] == keys[evens[inside]]
        pa_arr = evens[is_pair]
        pa = pa_arr.tolist()
        pb = (pa_arr + 1).tolist()
        xa, xb = _gather(xs, pa), _gather(xs, pb)
        ya, yb = _gather(ys, pa), _gather(ys, pb)
        if has_inf or any(a == b for a, b in zip(xa, xb)):
            # Rare: an infinity, a doubling or a cancellation. Add pair by pair.
            sx: list[int | None] = []
            sy: list[int] = []
            for x1, y1, x2, y2 in zip(xa, ya, xb, yb):
                s_ = add(None if x1 is None else (x1, y1), None if x2 is None else (x2, y2))
                sx.append(None if s_ is None else s_[0])
                sy.append(0 if s_ is None else s_[1])
            has_inf = has_inf or any(v is None for v in sx)
        else:
            sx, sy = _pair_sums(xa, ya, xb, yb)  # type: ignore[assignment]
        # Output, in key order: the pair sum for a paired even entry, else the entry itself.
        npairs = len(pa)
        src = np.where(is_pair, np.cumsum(is_pair) - 1, npairs + evens).tolist()
        xs = _gather(sx + xs, src)
        ys = _gather(sy + ys, src)
        keys = keys[evens]
    return keys, xs, ys  # type: ignore[return-value]


def _bucket_weighted_sum(mags_points: dict[int, tuple[int, int]], top: int) -> Jac:
    """``sum(m * B_m)`` by running sums, for buckets ``1..top``."""
    run = _JINF
    acc = _JINF
    for m in range(top, 0, -1):
        pt = mags_points.get(m)
        if pt is not None:
            run = jadd_mixed(run, pt)
        if run[2]:
            acc = jadd(acc, run)
    return acc


def signed_digits(values: np.ndarray, c: int, levels: int) -> np.ndarray:
    """Signed base-2^c digits of int64 values, shape (levels, n).

    Digits are in [-2^(c-1), 2^(c-1) - 1] except the top level, which takes the remainder
    whole (|d| <= 2^(c-1)), so 16-bit values need only two 8-bit levels.
    """
    v = values.astype(np.int64, copy=True)
    half = 1 << (c - 1)
    mask = (1 << c) - 1
    out = np.empty((levels, len(v)), dtype=np.int64)
    for lv in range(levels - 1):
        d = ((v + half) & mask) - half
        out[lv] = d
        v = (v - d) >> c
    if np.any(np.abs(v) > half):
        raise ValueError("values do not fit the requested number of digit levels")
    out[levels - 1] = v
    return out


def digit_levels(max_abs: int, c: int) -> int:
    """Levels of signed base-2^c digits (see :func:`signed_digits`) enough for |v| <= max_abs."""
    half = 1 << (c - 1)
    levels = 1
    low = 0  # the most the lower levels can leave for the top digit to absorb
    while max_abs > half * (1 << (c * (levels - 1))) + low:
        low = low + (half - 1) * (1 << (c * (levels - 1)))
        levels += 1
    return levels


# --------------------------------------------------------------------------- MSM


def msm(points: Sequence[tuple[int, int] | None], scalars: Sequence[int]) -> tuple[int, int] | None:
    """``sum(s_i * P_i)`` for arbitrary integer scalars (reduced to (-r/2, r/2])."""
    pts: list[tuple[int, int]] = []
    ks: list[int] = []
    for pt, s in zip(points, scalars, strict=True):
        s %= R
        if s > R // 2:
            s -= R
        if pt is None or s == 0:
            continue
        pts.append(pt)
        ks.append(s)
    n = len(pts)
    if n == 0:
        return None
    if n < 4:
        return _straus(pts, ks)
    maxbits = max(abs(s) for s in ks).bit_length()
    c = max(3, min(10, int(math.log2(n)) - 2))
    levels = digit_levels((1 << maxbits), c)
    half = 1 << (c - 1)
    mask = (1 << c) - 1
    # digits for every scalar at every level (python ints: scalars can be 255-bit)
    all_keys: list[int] = []
    all_x: list[int] = []
    all_y: list[int] = []
    for pt, s in zip(pts, ks):
        x, y = pt
        ny = P - y
        v = s
        lv = 0
        while v:
            d = ((v + half) & mask) - half
            v = (v - d) >> c
            if d:
                all_keys.append(lv * (half + 1) + abs(d))
                all_x.append(x)
                all_y.append(y if d > 0 else ny)
            lv += 1
    keys_arr = np.asarray(all_keys, dtype=np.int64)
    order = np.argsort(keys_arr, kind="stable")
    ol = order.tolist()
    xs = [all_x[i] for i in ol]
    ys = [all_y[i] for i in ol]
    ukeys, bx, by = accumulate_buckets(keys_arr[order], xs, ys)
    top_level = max(all_keys) // (half + 1) if all_keys else 0
    per_level: list[dict[int, tuple[int, int]]] = [dict() for _ in range(max(levels, top_level) + 1)]
    for key, x, y in zip(ukeys.tolist(), bx, by):
        if x is not None:
            per_level[key // (half + 1)][key % (half + 1)] = (x, y)
    acc = _JINF
    for lv in range(len(per_level) - 1, -1, -1):
        for _ in range(c):
            acc = jdouble(acc)
        acc = jadd(acc, _bucket_weighted_sum(per_level[lv], half))
    return to_affine(acc)


def _straus(pts: list[tuple[int, int]], ks: list[int]) -> tuple[int, int] | None:
    """Few-point MSM by joint double-and-add over a table of all subset sums (Shamir's trick)."""
    signed = [(pt if k > 0 else neg(pt), abs(k)) for pt, k in zip(pts, ks)]
    n = len(signed)
    sums: list[Jac] = [_JINF] * (1 << n)
    for mask in range(1, 1 << n):
        low = mask & -mask
        sums[mask] = jadd_mixed(sums[mask ^ low], signed[low.bit_length() - 1][0])
    table = batch_to_affine(sums)
    acc = _JINF
    for bit in range(max(k for _, k in signed).bit_length() - 1, -1, -1):
        acc = jdouble(acc)
        idx = 0
        for j, (_, k) in enumerate(signed):
            if (k >> bit) & 1:
                idx |= 1 << j
        if idx:
            acc = jadd_mixed(acc, table[idx])
    return to_affine(acc)


def shifted_tables(points: Sequence[tuple[int, int]], c: int, levels: int) -> list[list[tuple[int, int]]]:
    """``[[2^(c*l) * P for P in points] for l in range(levels)]``, affine."""
    tables = [list(points)]
    cur = [to_jac(pt) for pt in points]
    for _ in range(1, levels):
        nxt = []
        for j in cur:
            for _ in range(c):
                j = jdouble(j)
            nxt.append(j)
        cur = nxt
        aff = batch_to_affine(cur)
        if any(a is None for a in aff):  # cannot happen for points of prime order
            raise ArithmeticError("shifted generator is the point at infinity")
        tables.append(aff)  # type: ignore[arg-type]
    return tables


def commit_chunks(
    tables: list[list[tuple[int, int]]],
    h_tables: list[tuple[int, int]],
    values: np.ndarray,
    blindings: Sequence[int],
    c: int,
) -> list[tuple[int, int] | None]:
    """Pedersen commitments ``sum_i v[j, i] * G_i + b_j * H`` for every row ``j`` of ``values``.

    ``tables[l][i] = 2^(c*l) G_i`` and ``h_tables[l] = 2^(c*l) H``; values are small signed
    ints (int64) and are split into signed base-2^c digits, so every digit of every value is one
    affine addition into one of ``2^(c-1)`` buckets per row; a row costs one bucket reduction.
    """
    n_rows, m = values.shape
    half = 1 << (c - 1)
    nb = half + 1
    max_abs = int(np.abs(values).max()) if values.size else 0
    levels = digit_levels(max(max_abs, 1), c)
    if levels > len(tables):
        raise ValueError(f"values need {levels} digit levels, generator tables have {len(tables)}")
    flat_x: list[int] = []
    flat_y: list[int] = []
    for lv in range(levels):
        for x, y in tables[lv][:m]:
            flat_x.append(x)
            flat_y.append(y)
    for x, y in h_tables:
        flat_x.append(x)
        flat_y.append(y)
    h_off = levels * m
    neg_y = [P - y for y in flat_y]
    ysrc = flat_y + neg_y
    xsrc = flat_x + flat_x
    nflat = len(flat_y)
    results: list[tuple[int, int] | None] = []
    group = max(1, 65536 // max(m, 1))
    hc = len(h_tables)
    for g0 in range(0, n_rows, group):
        rows = values[g0 : g0 + group]
        gkeys = []
        gidx = []
        for r_local in range(rows.shape[0]):
            dig = signed_digits(rows[r_local], c, levels)  # (levels, m)
            nz_l, nz_i = np.nonzero(dig)
            d = dig[nz_l, nz_i]
            gkeys.append(r_local * nb + np.abs(d))
            gidx.append(nz_l * m + nz_i + np.where(d < 0, nflat, 0))
            bdig = signed_digits_int(blindings[g0 + r_local] % R, c, hc)
            for lv, dv in enumerate(bdig):
                if dv:
                    gkeys.append(np.array([r_local * nb + abs(dv)], dtype=np.int64))
                    gidx.append(np.array([h_off + lv + (nflat if dv < 0 else 0)], dtype=np.int64))
        keys = np.concatenate(gkeys)
        idx = np.concatenate(gidx)
        order = np.argsort(keys, kind="stable")
        sel = idx[order].tolist()
        xs = _gather(xsrc, sel)
        ys = _gather(ysrc, sel)
        ukeys, bx, by = accumulate_buckets(keys[order], xs, ys)
        per_row: list[dict[int, tuple[int, int]]] = [dict() for _ in range(rows.shape[0])]
        for key, x, y in zip(ukeys.tolist(), bx, by):
            if x is not None:
                per_row[key // nb][key % nb] = (x, y)
        js = [_bucket_weighted_sum(b, half) for b in per_row]
        results.extend(batch_to_affine(js))
    return results


def signed_digits_int(v: int, c: int, levels: int) -> list[int]:
    """Signed base-2^c digits of a Python int, exactly ``levels`` of them (top digit whole)."""
    half = 1 << (c - 1)
    mask = (1 << c) - 1
    out = []
    for _ in range(levels - 1):
        d = ((v + half) & mask) - half
        out.append(d)
        v = (v - d) >> c
    if abs(v) > half:
        raise ValueError("scalar does not fit the digit levels")
    out.append(v)
    return out
