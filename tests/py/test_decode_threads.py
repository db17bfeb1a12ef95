"""test_decode_threads.py: tensors decoded on demand by many threads at once,
each run repeated, the values checked against NumPy's.

The runtime decodes every input whose bytes are not in place as a job of
its own, on the run's threads (`--threads 8` here, more than the machine
has cores, so the jobs interleave). The readers behind those jobs share
state between the tensors of one checkpoint: an Orbax item's key-value
store (an OCDBT database or a directory) is shared by all its zarr arrays;
an aggregate msgpack file by its chunked arrays and its placeholders'
arrays; the scratch file by every tensor decoded into it. A race there
shows as a wrong value, a reader's error, or (in a ThreadSanitizer build)
a report; each test runs the same conversion several times.

Inputs are written by python3-zarr (zarr v2 arrays, in a directory store or
in a dict whose keys and values are put in an OCDBT database by
ocdbt_build.py, written from the format's documentation), and by
python3-msgpack as Flax writes (chunked arrays, PLACEHOLDER values); the
output is read back with stnp.

usage: test_decode_threads.py --surg SURG [unittest args]
"""

import argparse
import os
import sys
import tempfile
import unittest

import msgpack
import numcodecs
import numpy as np
import zarr

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ocdbt_build  # noqa: E402
import stnp  # noqa: E402
from runutil import run_surg  # noqa: E402
from test_msgpack import chunked, ndarray_ext  # noqa: E402
from test_orbax import metadata, write_zarr  # noqa: E402

ARGS = None  # filled in by main()
REPEAT = 4
THREADS = "8"


class DecodeThreadsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.identity = self.path("id.surg")
        open(self.identity, "w").close()

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, *names):
        return os.path.join(self.dir, *names)

    def run_many(self, src, want, recipe=None):
        """`surg run --threads 8` REPEAT times; every output holds `want`."""
        out = self.path("out.safetensors")
        for _ in range(REPEAT):
            if os.path.exists(out):
                os.unlink(out)
            rc, _, err = run_surg(ARGS.surg, "run", "--threads", THREADS, recipe or self.identity,
                                  src, out, timeout=300)
            self.assertEqual(rc, 0, err)
            self.assertNotIn("Sanitizer", err)
            got = {k: a for k, (_, a) in stnp.load(out)[0].items()}
            self.assertEqual(sorted(got), sorted(want))
            for k, a in want.items():
                self.assertEqual((got[k].dtype, got[k].shape), (a.dtype, a.shape), k)
                self.assertTrue(np.array_equal(got[k], a), k)

    @staticmethod
    def leaves(arrays):
        return [(name.split("/"), "np.ndarray", False, a.shape) for name, a in arrays.items()]

    @staticmethod
    def mixed_arrays(rng, n):
        """n arrays of assorted dtypes, shapes, chunks, orders and compressors:
        (array, write keywords) by tensor name."""
        arrays = {}
        kinds = [
            (np.float32, {"compressor": numcodecs.Zlib(level=1)}),
            (np.int16, {"compressor": None, "order": "F"}),
            (np.float64, {"compressor": numcodecs.Zlib(level=3), "order": "F"}),
            (np.uint8, {"compressor": None}),
        ]
        for i in range(n):
            dt, kw = kinds[i % len(kinds)]
            shape = (20 + 7 * i, 3 + i % 6)
            a = (rng.standard_normal(shape) * 100).astype(dt)
            arrays["layers_%d/w" % i] = (a, dict(kw, chunks=(4 + i % 5, 2 + i % 3)))
        return arrays

    def test_directory_store_mixed(self):
        """One directory store: compressed, Fortran-order, missing chunks."""
        arrays = self.mixed_arrays(np.random.default_rng(1), 32)
        d = self.path("ckpt")
        os.mkdir(d)
        for name, (a, kw) in arrays.items():
            write_zarr(d, name.replace("/", "."), a, **kw)
        with open(os.path.join(d, "_METADATA"), "w") as f:
            f.write(metadata(self.leaves({k: a for k, (a, _) in arrays.items()}),
                             use_ocdbt=False, use_zarr3=False))
        self.run_many(d, {k: a for k, (a, _) in arrays.items()})

    def test_ocdbt_store(self):
        """One OCDBT database holds every array's .zarray and chunks, small
        values inline in its leaves, the rest in two data files."""
        arrays = self.mixed_arrays(np.random.default_rng(2), 32)
        store = {}
        for name, (a, kw) in arrays.items():
            z = zarr.open_array(store=store, path=name.replace("/", "."), mode="w",
                                shape=a.shape, dtype=a.dtype, fill_value=0, **kw)
            z[...] = a
        d = self.path("ckpt")
        os.mkdir(d)
        items = {k.encode(): bytes(v) for k, v in store.items()}
        ocdbt_build.build(d, items, leaf_entries=8, fanout=4, max_inline=40)
        with open(os.path.join(d, "_METADATA"), "w") as f:
            f.write(metadata(self.leaves({k: a for k, (a, _) in arrays.items()}),
                             use_ocdbt=True, use_zarr3=False))
        self.run_many(d, {k: a for k, (a, _) in arrays.items()})

    def test_aggregate_chunked_and_placeholders(self):
        """An aggregate `checkpoint` file: chunked arrays (pieces of the file
        joined) beside PLACEHOLDER values whose arrays are zarr directories of
        the item, and arrays in place."""
        rng = np.random.default_rng(3)
        d = self.path("ckpt")
        os.mkdir(d)
        tree, want, leaves = {}, {}, []
        for i in range(12):
            a = rng.standard_normal((30 + i, 5)).astype(np.float32)
            tree["chunked_%d" % i] = chunked(a, 7 + i)
            want["chunked_%d" % i] = a
            leaves.append((["chunked_%d" % i], "np.ndarray", True, None))
            b = rng.integers(-1000, 1000, (17 + 3 * i, 4)).astype(np.int32)
            write_zarr(d, "zarr_%d" % i, b, chunks=(5, 3),
                       compressor=numcodecs.Zlib(level=1) if i % 2 else None)
            tree["zarr_%d" % i] = "PLACEHOLDER://zarr_%d" % i
            want["zarr_%d" % i] = b
            leaves.append((["zarr_%d" % i], "np.ndarray", False, None))
            c = np.arange(6 + i, dtype=np.int64)
            tree["plain_%d" % i] = ndarray_ext(c)
            want["plain_%d" % i] = c
            leaves.append((["plain_%d" % i], "np.ndarray", True, None))
        with open(os.path.join(d, "checkpoint"), "wb") as f:
            f.write(msgpack.packb(tree, use_bin_type=True))
        with open(os.path.join(d, "_METADATA"), "w") as f:
            f.write(metadata(leaves, use_zarr3=False))
        self.run_many(d, want)

    def test_large_transposed_chunks(self):
        """Fortran-order chunks over 4 MiB: each staged in a temporary file of
        its own while the others are."""
        rng = np.random.default_rng(4)
        arrays = {}
        for i in range(4):
            a = rng.standard_normal((1100 + i, 1030)).astype(np.float32)
            arrays["big_%d" % i] = (a, {"chunks": (1100, 1030), "order": "F",
                                        "compressor": None if i % 2 else numcodecs.Zlib(1)})
        d = self.path("ckpt")
        os.mkdir(d)
        for name, (a, kw) in arrays.items():
            write_zarr(d, name, a, **kw)
        with open(os.path.join(d, "_METADATA"), "w") as f:
            f.write(metadata(self.leaves({k: a for k, (a, _) in arrays.items()}),
                             use_ocdbt=False, use_zarr3=False))
        self.run_many(d, {k: a for k, (a, _) in arrays.items()})

    def test_one_input_many_consumers(self):
        """An array read by several outputs and by many jobs of each: it is
        decoded once, before any of them reads it."""
        rng = np.random.default_rng(5)
        w = rng.standard_normal((4096, 64)).astype(np.float32)
        v = rng.standard_normal((512, 8)).astype(np.float32)
        d = self.path("ckpt")
        os.mkdir(d)
        write_zarr(d, "w", w, chunks=(100, 64), compressor=numcodecs.Zlib(1))
        write_zarr(d, "v", v, chunks=(64, 8))
        with open(os.path.join(d, "_METADATA"), "w") as f:
            f.write(metadata(self.leaves({"w": w, "v": v}), use_ocdbt=False, use_zarr3=False))
        recipe = self.path("r.surg")
        with open(recipe, "w") as f:
            f.write('split "w" axis 0 -> "top", "bottom"\nmap "v" = x * 2\n')
        self.run_many(d, {"top": w[:2048], "bottom": w[2048:], "v": v * 2}, recipe)


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--surg", required=True)
    ARGS, rest = parser.parse_known_args()
    ARGS.surg = os.path.abspath(ARGS.surg)
    unittest.main(argv=[sys.argv[0]] + rest)


if __name__ == "__main__":
    main()
