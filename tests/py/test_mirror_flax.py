"""test_mirror_flax.py: `mirror` end to end on Flax msgpack checkpoints, as
Flax, Optax and t5x save optimizer state: a TrainState with Optax Adam's
tuple (opt_state/0/mu, opt_state/0/nu, opt_state/0/count, the empty
opt_state/1), Optax MultiSteps around a chain, t5x's Adafactor with its
slots beside each parameter (state/param_states/<path>/m, v, v_row, v_col)
and Optax's FactoredState. Inputs are written with test_msgpack's
re-implementation of flax.serialization (python3-msgpack and NumPy); outputs
are read back with python3-msgpack and every slot checked with NumPy: moved
slots hold the input's bytes, transposed ones the input transposed, new ones
zeros, and factored second moments exactly what Adafactor's own rule (t5x's
_factored_dims and init_param_state, written again below) gives for the
transposed gradient statistics.

usage: test_mirror_flax.py --surg SURG [--examples DIR] [unittest args]
"""

import argparse
import os
import sys
import tempfile
import unittest

import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runutil import run_surg  # noqa: E402
from test_msgpack import flat, msgpack_restore, to_bytes  # noqa: E402

ARGS = None  # filled in by main()
RNG = np.random.default_rng(15)

T5X = ('mirror "target/" -> "state/param_states/$1/m" factored "state/param_states/$1/v", '
       '"state/param_states/$1/v_row", "state/param_states/$1/v_col"')


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


# ---- Adafactor's rule, as t5x's adafactor.py and Optax's factorized.py ----

def factored_dims(shape, min_dim=128):
    """(d1, d0): the two longest axes, or None (t5x: _factored_dims)."""
    if len(shape) < 2:
        return None
    order = np.argsort(shape, kind="stable")
    if shape[order[-2]] < min_dim:
        return None
    return int(order[-2]), int(order[-1])


def adafactor_stats(g2, min_dim=128):
    """t5x's v_row, v_col, v for squared gradients g2 (one step, decay 0)."""
    one = np.zeros((1,), np.float32)
    fd = factored_dims(g2.shape, min_dim)
    if fd is None:
        return {"v_row": one, "v_col": one, "v": g2.astype(np.float32)}
    d1, d0 = fd
    return {"v_row": g2.mean(axis=d0).astype(np.float32),
            "v_col": g2.mean(axis=d1).astype(np.float32), "v": one}


def t5x_state(param, g2, momentum=None):
    """_AdafactorParamState(v_row, v_col, v, m), as to_state_dict orders it."""
    st = adafactor_stats(g2)
    m = np.zeros((1,), np.float32) if momentum is None else momentum
    return {"v_row": st["v_row"], "v_col": st["v_col"], "v": st["v"], "m": m}


class MirrorFlaxTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def run_recipe(self, recipe, tree, ok=True):
        src, out, rp = self.path("in.msgpack"), self.path("out.msgpack"), self.path("r.surg")
        with open(src, "wb") as f:
            f.write(to_bytes(tree))
        with open(rp, "w") as f:
            f.write(recipe)
        rc, _, err = run_surg(ARGS.surg, "run", rp, src, out)
        if not ok:
            self.assertEqual(rc, 1, err)
            self.assertFalse(os.path.exists(out))
            return err
        self.assertEqual(rc, 0, err)
        with open(out, "rb") as f:
            return msgpack_restore(f.read())

    def same(self, got, want, name=""):
        self.assertEqual(got.dtype, want.dtype, name)
        self.assertEqual(got.shape, want.shape, name)
        self.assertEqual(got.tobytes(), np.ascontiguousarray(want).tobytes(), name)

    # -- Flax TrainState, Optax Adam: opt_state is the tuple (adam, EmptyState)

    def train_state(self):
        params = {"Dense_0": {"kernel": rand(4, 3), "bias": rand(3)},
                  "Dense_1": {"kernel": rand(3, 2), "bias": rand(2)}}
        mu = {k: {n: rand(*a.shape) for n, a in v.items()} for k, v in params.items()}
        nu = {k: {n: np.abs(rand(*a.shape)) for n, a in v.items()} for k, v in params.items()}
        adam = {"count": np.array(5, np.int32), "mu": mu, "nu": nu}
        return {"step": 5, "params": params, "opt_state": (adam, {})}

    def test_adam_tuple(self):
        tree = self.train_state()
        out = self.run_recipe(
            'mirror "params/" -> "opt_state/0/mu/", "opt_state/0/nu/"\n'
            'rename "params/Dense_0/**" -> "params/hidden/$1"\n'
            'map "params/hidden/kernel" = transpose(x)\n'
            'drop "params/Dense_1/bias"\n'
            'fill "params/head/kernel" : f32[3, 5] = 1\n', tree)
        p, mu, nu = (tree["params"], tree["opt_state"][0]["mu"], tree["opt_state"][0]["nu"])
        adam = out["opt_state"]["0"]
        for moment, src in (("mu", mu), ("nu", nu)):
            got = adam[moment]
            self.same(got["hidden"]["kernel"], src["Dense_0"]["kernel"].T, moment)
            self.same(got["hidden"]["bias"], src["Dense_0"]["bias"], moment)
            self.same(got["Dense_1"]["kernel"], src["Dense_1"]["kernel"], moment)
            self.assertNotIn("bias", got["Dense_1"])
            self.same(got["head"]["kernel"], np.zeros((3, 5), np.float32), moment)
            self.assertNotIn("Dense_0", got)
        self.same(out["params"]["hidden"]["kernel"], p["Dense_0"]["kernel"].T)
        self.same(adam["count"], np.array(5, np.int32))
        self.assertEqual(out["opt_state"]["1"], {})  # EmptyState, kept
        self.assertEqual(out["step"], 5)
        self.assertEqual(sorted(out), ["opt_state", "params", "step"])

    def test_adam_mismatch_fails(self):
        tree = self.train_state()
        del tree["opt_state"][0]["nu"]["Dense_1"]["bias"]
        tree["opt_state"][0]["mu"]["Dense_0"]["bias"] = rand(4)
        err = self.run_recipe('mirror "params/" -> "opt_state/0/mu/", "opt_state/0/nu/"\n',
                              tree, ok=False)
        self.assertIn('"params/Dense_1/bias" has no optimizer slot "opt_state/0/nu/Dense_1/bias"',
                      err)
        self.assertIn('slot "opt_state/0/mu/Dense_0/bias" is f32[4], but its parameter '
                      '"params/Dense_0/bias" is f32[3]', err)

    # -- Optax MultiSteps around chain(clip, adam): the trees nest deeper

    def test_multisteps_chain(self):
        params = {"enc": {"kernel": rand(4, 6)}, "dec": {"kernel": rand(6, 2)}}
        like = lambda f: {k: {n: f(a) for n, a in v.items()} for k, v in params.items()}  # noqa
        mu, nu, acc = like(lambda a: rand(*a.shape)), like(lambda a: rand(*a.shape)), \
            like(lambda a: rand(*a.shape))
        inner = ({}, ({"count": np.array(3, np.int32), "mu": mu, "nu": nu}, {}))
        opt = {"mini_step": np.array(1, np.int32), "gradient_step": np.array(3, np.int32),
               "inner_opt_state": inner, "acc_grads": acc, "skip_state": {}}
        tree = {"step": 3, "params": params, "opt_state": opt}
        out = self.run_recipe(
            'mirror "params/" -> "opt_state/inner_opt_state/1/0/mu/", '
            '"opt_state/inner_opt_state/1/0/nu/", "opt_state/acc_grads/"\n'
            'rename "params/enc/**" -> "params/encoder/$1"\n'
            'map "params/dec/kernel" = transpose(x)\n', tree)
        o = out["opt_state"]
        adam = o["inner_opt_state"]["1"]["0"]
        for got, src in ((adam["mu"], mu), (adam["nu"], nu), (o["acc_grads"], acc)):
            self.same(got["encoder"]["kernel"], src["enc"]["kernel"])
            self.same(got["dec"]["kernel"], src["dec"]["kernel"].T)
            self.assertNotIn("enc", got)
        self.assertEqual(o["inner_opt_state"]["0"], {})
        self.assertEqual(o["inner_opt_state"]["1"]["1"], {})
        self.same(o["mini_step"], np.array(1, np.int32))
        self.same(adam["count"], np.array(3, np.int32))

    # -- t5x Adafactor: slots beside each parameter, factored second moments

    def t5x_tree(self, momentum=False):
        shapes = {"encoder/dense/kernel": (160, 128),  # factored, not square
                  "encoder/square/kernel": (128, 128),  # factored, square
                  "encoder/bias": (128,),  # a vector: v
                  "encoder/small/kernel": (4, 8),  # short axes: v
                  "decoder/kernel": (128, 144)}
        params, states, g2 = {}, {}, {}
        for name, shape in shapes.items():
            g2[name] = np.abs(rand(*shape))
            params[name] = rand(*shape)
            states[name] = t5x_state(params[name], g2[name], rand(*shape) if momentum else None)
        nest = lambda flat_: unflatten(flat_)  # noqa
        tree = {"target": nest(params),
                "state": {"step": np.array(1000, np.int32), "param_states": nest(states)}}
        return tree, params, states, g2

    def slots(self, out, name):
        node = out["state"]["param_states"]
        for seg in name.split("/"):
            node = node[seg]
        return node

    def test_t5x_rename_transpose_drop_add(self):
        tree, params, states, g2 = self.t5x_tree()
        out = self.run_recipe(
            T5X + "\n"
            'rename "target/encoder/**" -> "target/enc/$1"\n'
            'map "target/enc/{dense,square,small}/kernel" = transpose(x)\n'
            'drop "target/decoder/kernel"\n'
            'fill "target/enc/new/kernel" : f32[256, 192] = zeros\n'
            'fill "target/enc/new/scale" : f32[192] = ones\n', tree)
        # moved, and transposed: exactly Adafactor's statistics of the
        # transposed squared gradients
        for short in ("dense", "square", "small"):
            name = f"encoder/{short}/kernel"
            got = self.slots(out, f"enc/{short}/kernel")
            want = adafactor_stats(g2[name].T)
            for k in ("v_row", "v_col", "v"):
                np.testing.assert_allclose(got[k], want[k], rtol=1e-6, err_msg=f"{short} {k}")
                self.assertEqual(got[k].shape, want[k].shape, f"{short} {k}")
            self.same(got["m"], np.zeros((1,), np.float32))
        sq_in, sq_out = states["encoder/square/kernel"], self.slots(out, "enc/square/kernel")
        self.same(sq_out["v_row"], sq_in["v_col"], "square: v_row <- v_col")
        self.same(sq_out["v_col"], sq_in["v_row"], "square: v_col <- v_row")
        d_in, d_out = states["encoder/dense/kernel"], self.slots(out, "enc/dense/kernel")
        self.same(d_out["v_row"], d_in["v_row"], "dense: v_row stays over the longer axis")
        self.same(self.slots(out, "enc/bias")["v"], states["encoder/bias"]["v"])
        self.assertNotIn("decoder", out["state"]["param_states"])
        self.assertNotIn("decoder", out["target"])
        # new parameters: zero slots of the shapes t5x's init_param_state makes
        for name, shape in (("enc/new/kernel", (256, 192)), ("enc/new/scale", (192,))):
            want = t5x_state(None, np.zeros(shape, np.float32))
            got = self.slots(out, name)
            self.assertEqual(sorted(got), sorted(want))
            for k, a in want.items():
                self.same(got[k], a, f"{name} {k}")
        self.same(out["state"]["step"], np.array(1000, np.int32))
        self.assertEqual(sorted(flat(out["target"])), sorted(
            ["enc/dense/kernel", "enc/square/kernel", "enc/bias", "enc/small/kernel",
             "enc/new/kernel", "enc/new/scale"]))

    def test_t5x_momentum(self):
        tree, params, states, g2 = self.t5x_tree(momentum=True)
        out = self.run_recipe(T5X + '\nmap "target/encoder/dense/kernel" = transpose(x)\n', tree)
        got = self.slots(out, "encoder/dense/kernel")
        self.same(got["m"], states["encoder/dense/kernel"]["m"].T)
        self.same(self.slots(out, "decoder/kernel")["m"], states["decoder/kernel"]["m"])

    def test_t5x_mismatch_fails(self):
        tree, _, _, _ = self.t5x_tree()
        ps = tree["state"]["param_states"]
        del ps["decoder"]["kernel"]["v_col"]
        ps["encoder"]["dense"]["kernel"]["v_row"] = np.zeros((160,), np.float32)
        err = self.run_recipe(T5X + "\n", tree, ok=False)
        self.assertIn('"target/decoder/kernel" has no optimizer slot '
                      '"state/param_states/decoder/kernel/v_col"', err)
        self.assertIn('slot "state/param_states/encoder/dense/kernel/v_row" is f32[160], but its '
                      'parameter "target/encoder/dense/kernel" is f32[160, 128], so it should '
                      'be f32[128] (the parameter without axis 0, its longest)', err)

    # -- Optax's adafactor: FactoredState(count, v_row, v_col, v), trees by prefix

    def test_optax_factored_state(self):
        params = {"w": rand(256, 130), "b": rand(130)}
        g2 = {k: np.abs(rand(*a.shape)) for k, a in params.items()}
        st = {k: adafactor_stats(g) for k, g in g2.items()}
        fs = {"count": np.array(2, np.int32),
              **{f: {k: st[k][f] for k in params} for f in ("v_row", "v_col", "v")}}
        tree = {"params": params, "opt_state": (fs, {}, {})}
        out = self.run_recipe(
            'mirror "params/" -> factored "opt_state/0/v/", "opt_state/0/v_row/", '
            '"opt_state/0/v_col/"\n'
            'map "params/w" = transpose(x)\nrename "params/b" -> "params/bias"\n', tree)
        o = out["opt_state"]["0"]
        want = adafactor_stats(g2["w"].T)
        for f in ("v_row", "v_col", "v"):
            np.testing.assert_allclose(o[f]["w"], want[f], rtol=1e-6)
            self.same(o[f]["bias"], st["b"][f])
        self.same(o["count"], np.array(2, np.int32))

    # -- the example recipe

    def test_example_t5x_rename(self):
        recipe = os.path.join(ARGS.examples, "t5x_adafactor_rename.surg")
        with open(recipe) as f:
            text = f.read()
        layers = {}
        for i in range(2):
            for part, shape in (("attention/query/kernel", (128, 128)),
                                ("mlp/wi/kernel", (128, 256)), ("pre_attention_layer_norm/scale",
                                                                (128,))):
                layers[f"encoder/layers_{i}/{part}"] = shape
        layers["token_embedder/embedding"] = (320, 128)
        params = {k: rand(*s) for k, s in layers.items()}
        g2 = {k: np.abs(rand(*s)) for k, s in layers.items()}
        states = {k: t5x_state(params[k], g2[k]) for k in layers}
        tree = {"target": unflatten(params),
                "state": {"step": np.array(7, np.int32), "param_states": unflatten(states)}}
        out = self.run_recipe(text, tree)
        for i in range(2):
            q = f"encoder/layers_{i}/attention/query/kernel"
            got = self.slots(out, f"encoder/block_{i}/attention/q/kernel")
            for k, a in states[q].items():
                self.same(got[k], a, k)
            wi = f"encoder/layers_{i}/mlp/wi/kernel"
            got = self.slots(out, f"encoder/block_{i}/mlp/wi/kernel")
            want = adafactor_stats(g2[wi].T)
            for k, a in want.items():
                np.testing.assert_allclose(got[k], a, rtol=1e-6)
        self.same(self.slots(out, "token_embedder/embedding")["v_row"],
                  states["token_embedder/embedding"]["v_row"])


def unflatten(flat_):
    tree = {}
    for name, v in flat_.items():
        node = tree
        segs = name.split("/")
        for s in segs[:-1]:
            node = node.setdefault(s, {})
        node[segs[-1]] = v
    return tree


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--surg", required=True)
    ap.add_argument("--examples", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                       "examples"))
    ARGS, rest = ap.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
