#!/usr/bin/python3
"""verify_merge.py: check, with NumPy alone, what a merge recipe
(examples/merge_METHOD.surg) wrote from the checkpoints of
make_merge_checkpoints.py.

usage: verify_merge.py METHOD CKPT_DIR OUT.safetensors
       METHOD: linear, task_arithmetic, slerp, ties, dare_linear, dare_ties

Each method is written here again from mergekit's implementation
(mergekit/merge_methods/linear.py, slerp.py, generalized_task_arithmetic.py
and mergekit/sparsify.py) and the papers, with the parameters the recipe
uses, step by step as mergekit takes them, in float32 as mergekit computes
float32 models -- except SLERP, whose angle is ill-conditioned (acos near
1): mergekit's float32 dot product is itself tens of ulps off, so SLERP is
checked against the same steps in float64. Every tensor of OUT must agree with it within a few float32
ulps of the operands (|base| + |ft1| + |ft2|, an element's scale): the
order in which sums are added differs (surg sums in double), which moves a
per-tensor coefficient (SLERP's angle, DARE's L1 ratio) by an ulp or so. DARE's
random masks are surg's own seeded stream (docs/numerics.md, "bernoulli"):
they are recomputed here with a NumPy Philox, and checked for what mergekit's
torch.bernoulli masks are: each entry kept with probability `density`.
"""

import os
import sys

import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import stnp  # noqa: E402
from runutil import philox4x32_10, philox_key  # noqa: E402

F = np.float32


# ---- mergekit's methods, in NumPy ---------------------------------------

def linear(tensors, weights):
    """linear.py, normalize true: (weights * stack).sum(0) / weights.sum(0),
    the weights in the tensors' dtype."""
    w = np.array(weights, F)
    res = (w[:, None] * np.stack([t.ravel() for t in tensors])).sum(0, dtype=F)
    return (res / w.sum(dtype=F)).reshape(tensors[0].shape)


def normalize(v, eps=1e-8):
    """slerp.py's normalize: divide by the norm only when it is above eps."""
    n = np.linalg.norm(v)
    return v / n if n > eps else v


def slerp(t, v0, v1, dot_threshold=0.9995, eps=1e-8):
    """slerp.py's slerp."""
    c0, c1 = v0.copy(), v1.copy()
    dot = np.sum(normalize(v0, eps) * normalize(v1, eps))
    if np.abs(dot) > dot_threshold:  # nearly colinear: lerp
        return (1 - t) * c0 + t * c1
    theta_0 = np.arccos(dot)
    sin_theta_0 = np.sin(theta_0)
    theta_t = theta_0 * t
    s0 = np.sin(theta_0 - theta_t) / sin_theta_0
    s1 = np.sin(theta_t) / sin_theta_0
    return s0 * c0 + s1 * c1


def magnitude(delta, density):
    """sparsify.py's magnitude: keep the int(density * n) entries largest in
    magnitude (torch.argsort of |w| as float; ties here to the lower index,
    as surg's topk_mask breaks them: torch leaves their order open)."""
    if density >= 1:
        return delta
    k = int(density * delta.size)
    w = np.abs(delta).ravel().astype(F)
    top = np.argsort(-w, kind="stable")[:k]
    mask = np.zeros(delta.size, F)
    mask[top] = 1
    return delta * mask.reshape(delta.shape)


def bernoulli_l1(delta, mask, eps=1e-7):
    """sparsify.py's bernoulli with rescale (RescaleNorm.l1, mergekit's since
    2025; before, and in the paper, the kept entries were divided by the
    density): the masked tensor scaled to the task vector's L1 norm, unless
    either norm is below eps."""
    masked = delta * mask
    before = np.abs(delta).sum(dtype=F)
    after = np.abs(masked).sum(dtype=F)
    if before < eps or after < eps:
        return masked
    return masked * (before / after)


def gta(base, deltas, weights, consensus, normalize_, lambda_=1.0):
    """generalized_task_arithmetic.py's GTATask.execute after sparsifying:
    weighted deltas, the sign consensus ("sum": the sign of their sum, 0
    counting as +; a zero delta agrees with neither sign), the mix, the
    divisor (0 -> 1) when normalizing, lambda, and the base's dtype."""
    deltas = np.stack(deltas)
    w = np.array(weights, F).reshape((-1,) + (1,) * (deltas.ndim - 1))
    weighted = deltas * w
    if consensus:
        sign = np.sign(weighted)
        majority = (weighted.sum(0, dtype=F) >= 0).astype(F) * 2 - 1
        mask = (sign == majority).astype(F)
        mixed = (weighted * mask).sum(0, dtype=F)
        divisor = (w * mask).sum(0, dtype=F)
        divisor[divisor == 0] = 1
    else:
        mixed = weighted.sum(0, dtype=F)
        divisor = np.broadcast_to(w.sum(0, dtype=F), mixed.shape).copy()
        divisor[np.abs(divisor) < 1e-8] = 1
    if normalize_:
        mixed = mixed / divisor
    if lambda_ != 1:
        mixed = mixed * F(lambda_)
    return (base + mixed).astype(F)


# ---- surg's masks ---------------------------------------------------------

def bernoulli_mask(seed, name, index, p, shape):
    """bernoulli(p) of the map writing NAME, its INDEX-th in the statement:
    element 4k + i is true when word i of Philox draw k < p * 2^32."""
    n = int(np.prod(shape))
    words = philox4x32_10(np.arange((n + 3) // 4, dtype=np.uint64), philox_key(seed, name), 1,
                          index)
    return (np.stack(words, axis=1).ravel()[:n].astype(np.float64) < p * 2.0 ** 32).reshape(shape)


# ---- the recipes' parameters ----------------------------------------------

SEED = 16  # merge_dare_*.surg


def expected(method, name, base, ft1, ft2, masks):
    if method == "linear":
        return linear([base, ft1, ft2], [0.2, 0.5, 0.3])
    if method == "task_arithmetic":
        return gta(base, [ft1 - base, ft2 - base], [0.7, 0.4], False, False, 0.9)
    if method == "slerp":
        # In float64: mergekit's float32 dot product (np.sum of the
        # normalized tensors) is itself some 50 ulps off the exact one here.
        return slerp(0.4, ft1.astype(np.float64), ft2.astype(np.float64))
    if method == "ties":
        d = [magnitude(ft1 - base, 0.5), magnitude(ft2 - base, 0.3)]
        return gta(base, d, [1.0, 0.6], True, True)
    if method in ("dare_linear", "dare_ties"):
        m1 = bernoulli_mask(SEED, "base/" + name, 0, 0.6, base.shape)
        m2 = bernoulli_mask(SEED, "base/" + name, 1, 0.8, base.shape)
        masks.append((m1, 0.6))
        masks.append((m2, 0.8))
        d = [bernoulli_l1(ft1 - base, m1.astype(F)), bernoulli_l1(ft2 - base, m2.astype(F))]
        return gta(base, d, [0.7, 0.4], method == "dare_ties", False)
    raise SystemExit("unknown method %r" % method)


def main(argv):
    if len(argv) != 4:
        sys.stderr.write(__doc__.split("\n\n")[1] + "\n")
        return 2
    method, ckdir, out = argv[1:]
    models = [stnp.load(os.path.join(ckdir, m + ".safetensors"))[0] for m in ("base", "ft1", "ft2")]
    got = stnp.load(out)[0]
    if sorted(got) != sorted(models[0]):
        print("FAIL: the output's names are not the base's")
        return 1
    worst, masks = 0, []
    for name in sorted(got):
        dt, value = got[name]
        base, ft1, ft2 = (m[name][1] for m in models)
        want = expected(method, name, base, ft1, ft2, masks)
        if dt != "F32" or value.shape != base.shape:
            print("FAIL: %s is %s%s, expected F32%s" % (name, dt, value.shape, base.shape))
            return 1
        # Errors in ulps of the operands' scale: where the terms cancel, a
        # coefficient rounded otherwise (a sum added in another order) moves
        # the result by ulps of the terms, not of the result.
        scale = np.abs(base) + np.abs(ft1) + np.abs(ft2)
        err = np.abs(value.astype(np.float64) - want) / np.spacing(scale)
        ulps = float(err.max())
        if not np.isfinite(value).all() or ulps > 8:
            i = int(np.nanargmax(err)) if np.isfinite(value).all() else int(np.argmin(np.isfinite(value)))
            print("FAIL: %s is %.1f ulps from mergekit's %s at %d: %r, expected %r"
                  % (name, ulps, method, i, value.ravel()[i], want.ravel()[i]))
            return 1
        worst = max(worst, ulps)
    for mask, density in masks:  # as torch.bernoulli(full(density)) keeps
        n = mask.size
        if abs(mask.mean() - density) > 5 * np.sqrt(density * (1 - density) / n) + 1.0 / n:
            print("FAIL: a mask keeps %.4f of %d entries, not %g" % (mask.mean(), n, density))
            return 1
    print("ok: %d tensors are mergekit's %s (within %.2g float32 ulps of the operands)"
          % (len(got), method, worst))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
