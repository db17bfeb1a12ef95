"""test_pt.py: PyTorch torch.save files into surg, checked against PyTorch
itself. Every file is written here by real PyTorch (torch.save of tensors of
each dtype, an nn.Module's state dict, a nested dict with an optimizer's
state, views that share a storage, a file in the legacy format, objects whose
unpickling runs code) or, for what PyTorch cannot write (a dtype only newer
versions have, a big-endian file, a broken archive), by rewriting such a file
or pickling by hand. surg's outputs are read back with stnp (the
repository's own safetensors reader) and compared bit for bit with what
torch.load gives.

usage: test_pt.py --surg SURG --examples DIR [unittest args]
"""

import argparse
import datetime
import json
import os
import struct
import sys
import tempfile
import unittest
import zipfile

import numpy as np
import torch

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stnp  # noqa: E402
from runutil import run_surg, sha256  # noqa: E402

ARGS = None  # filled in by main()

ST = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL", torch.complex64: "C64",
}


def plain(t):
    """A tensor's values as surg stores them: C order, little-endian, bf16
    as its bit patterns."""
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


def flatten(obj, prefix=""):
    """(name, tensor) in the order the pickle holds them, names joined
    with '.', as surg flattens."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from flatten(v, f"{prefix}.{i}" if prefix else str(i))


def view_key(t):
    return (t.storage().data_ptr(), t.dtype, t.storage_offset(), tuple(t.shape), t.stride())


def expected(obj):
    """({stored name: tensor}, {tied name: stored name}) of a loaded object:
    a tensor whose view (storage, dtype, offset, size, stride) an earlier one
    has is tied to it."""
    stored, ties, first = {}, {}, {}
    for name, t in flatten(obj):
        k = view_key(t)
        if k in first:
            ties[name] = first[k]
        else:
            first[k] = name
            stored[name] = t
    return stored, ties


# ---- the files, written once by PyTorch --------------------------------------

class Evil:
    """Unpickling this runs a shell command."""

    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


class TiedLM(torch.nn.Module):
    """A language model whose output head is its embedding, as Hugging Face
    ties them."""

    def __init__(self):
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(11, 4)
        self.norm = torch.nn.LayerNorm(4)
        self.lm_head = torch.nn.Linear(4, 11, bias=False)
        self.lm_head.weight = self.embed_tokens.weight


def every_dtype():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, generator=g) * 100
    return {
        "f32": x, "f16": x.half(), "bf16": x.bfloat16(), "f64": x.double(),
        "i64": x.long() * 12345678901, "i32": x.int(), "i16": x.short(),
        "i8": x.to(torch.int8), "u8": x.to(torch.uint8), "bool": x > 0,
        "c64": torch.complex(x, -x), "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 7, dtype=torch.int16), "ones": torch.ones(1, 1, 5),
    }


def write_files(d):
    torch.manual_seed(0)
    torch.save(every_dtype(), f"{d}/dtypes.pt")

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 3))
    torch.save(model.state_dict(), f"{d}/module.pth")
    torch.save(model.state_dict(), f"{d}/protocol4.pt", pickle_protocol=4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(2, 1, 6, 6)).sum().backward()
    opt.step()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3,
                "config": {"lr": 0.1, "name": "run-1", "note": None},
                "history": [torch.tensor([1.0, 2.0]), torch.tensor([3.0])]},
               f"{d}/nested.pt")

    w = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    b = torch.randn(5, 3).bfloat16()
    torch.save({"w": w, "wt": w.t(), "row": w[1], "col": w[:, 2], "tail": w.view(-1)[5:],
                "same": w, "again": w.view(4, 6), "every_other": w[::2, 1::2],
                "expand": torch.arange(3.0).expand(4, 3), "bt": b.t(), "b": b,
                "p": torch.nn.Parameter(torch.ones(2, 2))},
               f"{d}/views.pt")

    os.makedirs(f"{d}/hf", exist_ok=True)
    torch.save(TiedLM().state_dict(), f"{d}/hf/pytorch_model.bin")
    torch.save(torch.randn(3, 2).t(), f"{d}/lone.pt")
    torch.save(model.state_dict(), f"{d}/legacy.pt", _use_new_zipfile_serialization=False)
    torch.save({"model": {"w": w}, "acc": np.float64(0.5), "dtype": np.dtype("float32"),
                "device": torch.device("cuda", 0), "seen": {1, 2}, "frozen": frozenset("ab"),
                "cfg": {1.5: "x", None: 1, ("a", 1): 2, "lr": 0.1}, "raw": b"\xff\x00"},
               f"{d}/extras.pt")
    torch.save({"w": w, "when": datetime.datetime(2020, 1, 1)}, f"{d}/datetime.pt")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), f"{d}/script.pt")

    marker = f"{d}/ran"
    for name, fn, arg in (("system", os.system, f"touch {marker}-system"),
                          ("eval", eval, f"__import__('os').system('touch {marker}-eval')")):
        torch.save({"w": w, "payload": Evil(fn, arg)}, f"{d}/evil_{name}.pt")


def entries(path):
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def write_zip(path, items, compress=None):
    """A zip of (name, bytes) in order, stored unless `compress` says which
    names to deflate."""
    with zipfile.ZipFile(path, "w") as z:
        for name, data in items:
            method = zipfile.ZIP_DEFLATED if compress and compress(name) else zipfile.ZIP_STORED
            z.writestr(zipfile.ZipInfo(name), data, compress_type=method)


# ---- pickles by hand, for what torch 1.13 cannot write -----------------------

def pk_str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def pk_int(n):
    if -(1 << 31) <= n < (1 << 31):
        return b"J" + struct.pack("<i", n)
    return b"\x8a\x08" + struct.pack("<q", n)  # LONG1


def pk_tuple(items):
    return b"(" + b"".join(items) + b"t"


def pk_v2(key, numel, offset, size, stride, metadata=None, storage="FloatStorage"):
    """_rebuild_tensor_v2, with a metadata dict (pickled bytes) if given."""
    st = pk_tuple([pk_str("storage"), b"ctorch\n" + storage.encode() + b"\n", pk_str(key),
                   pk_str("cpu"), pk_int(numel)]) + b"Q"
    args = [st, pk_int(offset), pk_tuple(map(pk_int, size)), pk_tuple(map(pk_int, stride)),
            b"\x89", b"ccollections\nOrderedDict\n)R"]
    if metadata is not None:
        args.append(metadata)
    return b"ctorch._utils\n_rebuild_tensor_v2\n" + pk_tuple(args) + b"R"


def pk_v3(key, nbytes, dtype, offset, size, stride):
    """_rebuild_tensor_v3 over an untyped storage, as newer PyTorch writes
    tensors of dtypes that have no storage class."""
    storage = pk_tuple([pk_str("storage"), b"ctorch.storage\nUntypedStorage\n", pk_str(key),
                        pk_str("cpu"), pk_int(nbytes)]) + b"Q"
    args = pk_tuple([storage, pk_int(offset), pk_tuple(map(pk_int, size)),
                     pk_tuple(map(pk_int, stride)), b"\x89",
                     b"ccollections\nOrderedDict\n)R", b"ctorch\n" + dtype + b"\n"])
    return b"ctorch._utils\n_rebuild_tensor_v3\n" + args + b"R"


def pk_dict(pairs):
    return b"\x80\x02}(" + b"".join(pk_str(k) + v for k, v in pairs) + b"u."


# ---- the tests ----------------------------------------------------------------

TMP = None  # the files, written once for every test
LONG_PREFIX = "p" * 300 + "/"


def setUpModule():
    global TMP
    TMP = tempfile.TemporaryDirectory(prefix="surg-pt-")
    write_files(TMP.name)


def tearDownModule():
    TMP.cleanup()


class PtCase(unittest.TestCase):
    def path(self, name):
        return os.path.join(TMP.name, name)

    def ok(self, *args):
        rc, out, err = run_surg(ARGS.surg, *args)
        self.assertEqual(rc, 0, f"surg {' '.join(map(str, args))}: {err}")
        return out, err

    def refused(self, path, code, text, run=False):
        """surg schema (or run) refuses the file with an error `code` whose
        message or notes hold `text`; the messages and notes are returned."""
        out = self.path("refused.safetensors")
        args = ("run", self.recipe(""), path, out) if run else ("schema", path)
        rc, _, err = run_surg(ARGS.surg, *args, "--diagnostics", "json")
        self.assertEqual(rc, 1, f"{path}: {err}")
        errors = [d for d in map(json.loads, err.splitlines()) if d["severity"] == "error"]
        self.assertIn(code, [d["code"] for d in errors], err)
        text_all = "\n".join(" ".join([d["message"]] + d["notes"]) for d in errors)
        self.assertIn(text, text_all)
        self.assertFalse(os.path.exists(out))
        return text_all

    def recipe(self, text, name="r.surg"):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def convert(self, src, out_name="out.safetensors", recipe=""):
        out = self.path(out_name)
        if os.path.exists(out):
            os.remove(out)
        self.ok("run", self.recipe(recipe), src, out)
        tensors, meta, _ = stnp.load(out)
        return tensors, meta

    def assert_same(self, tensors, meta, obj):
        """surg's output holds exactly the loaded object's tensors, bit for
        bit, the shared ones as ties."""
        want, ties = expected(obj)
        self.assertEqual(sorted(tensors), sorted(want))
        for name, t in want.items():
            dtype, got = tensors[name]
            self.assertEqual(dtype, ST[t.dtype], name)
            self.assertEqual(list(got.shape), list(t.shape), name)
            self.assertEqual(got.tobytes(), plain(t).tobytes(), name)
        self.assertEqual(json.loads(meta.get("surg.ties", "{}")), ties)


class TestRead(PtCase):
    def test_dtypes(self):
        p = self.path("dtypes.pt")
        tensors, meta = self.convert(p)
        self.assert_same(tensors, meta, torch.load(p))
        out, _ = self.ok("schema", p, "--json")
        schema = json.loads(out)
        self.assertEqual(schema["bf16"], {"dtype": "BF16", "shape": [3, 4]})
        self.assertEqual(schema["scalar"], {"dtype": "F32", "shape": []})
        self.assertEqual(schema["empty"], {"dtype": "I16", "shape": [0, 7]})

    def test_state_dict(self):
        for name in ("module.pth", "protocol4.pt"):
            p = self.path(name)
            tensors, meta = self.convert(p)
            self.assert_same(tensors, meta, torch.load(p))
            self.assertIn("1.num_batches_tracked", tensors)  # an i64 0-d tensor
            self.assertEqual(tensors["1.num_batches_tracked"][0], "I64")

    def test_schema_tree(self):
        out, err = self.ok("schema", self.path("module.pth"))
        self.assertRegex(out, r"weight +f32\[4, 1, 3, 3\]")
        self.assertIn("9 tensors", out)
        self.assertEqual(err, "")

    def test_nested_optimizer(self):
        p = self.path("nested.pt")
        tensors, meta = self.convert(p)
        self.assert_same(tensors, meta, torch.load(p))
        self.assertIn("optimizer.state.0.exp_avg", tensors)
        self.assertIn("optimizer.state.3.exp_avg_sq", tensors)
        self.assertIn("history.1", tensors)
        _, err = self.ok("schema", p)
        # the numbers and strings: a note, not an error
        self.assertIn("note: skipped", err)
        self.assertIn('"optimizer.param_groups.0.lr"', err)

    def test_views_and_ties(self):
        p = self.path("views.pt")
        obj = torch.load(p)
        tensors, meta = self.convert(p)
        self.assert_same(tensors, meta, obj)
        self.assertEqual(json.loads(meta["surg.ties"]), {"same": "w", "again": "w"})
        np.testing.assert_array_equal(tensors["wt"][1], np.arange(24.0).reshape(4, 6).T)
        # the plan: contiguous views copied from the archive, the others
        # decoded first (only the ones the recipe reads)
        out, _ = self.ok("plan", self.recipe(""), "--from", p)
        self.assertIn('tied: "again" is stored as "w"', out)
        self.assertIn("decoded first: 5 input arrays", out)
        out, _ = self.ok("plan", self.recipe('keep "w", "row", "tail"\n'), "--from", p)
        self.assertNotIn("decoded", out)

    def test_views_any_threads(self):
        p = self.path("views.pt")
        digests = set()
        for threads in (1, 2, 7):
            out = self.path(f"t{threads}.safetensors")
            self.ok("run", self.recipe(""), p, out, "--threads", threads)
            digests.add(sha256(out))
        self.assertEqual(len(digests), 1)

    def test_recipe_on_views(self):
        """A transposed view computed on, a tie carried through a rename."""
        p = self.path("views.pt")
        tensors, meta = self.convert(
            p, recipe='map "wt" = x * 2\nrename "w" -> "weight"\ndrop "every_other"\n')
        np.testing.assert_array_equal(tensors["wt"][1], 2 * np.arange(24.0).reshape(4, 6).T)
        self.assertEqual(json.loads(meta["surg.ties"]), {"same": "weight", "again": "weight"})
        self.assertNotIn("every_other", tensors)

    def test_training_extras(self):
        """What training checkpoints hold beside tensors — a torch.device,
        NumPy scalars and dtypes, sets, keys that are floats, None or
        tuples, bytes — is read as data and skipped with a note."""
        p = self.path("extras.pt")
        tensors, _ = self.convert(p)
        self.assertEqual(list(tensors), ["model.w"])
        self.assertEqual(tensors["model.w"][1].tobytes(),
                         plain(torch.load(p)["model"]["w"]).tobytes())
        _, err = self.ok("schema", p)
        self.assertIn("note: skipped 10 values", err)
        self.assertIn('"acc", "dtype", "device" and 7 more', err)

    def test_sharded_bin(self):
        """A sharded pytorch_model.bin, as save_pretrained writes one: an
        index naming .bin shards, a tie inside a shard (both names listed),
        a transposed view in another; read as one checkpoint."""
        d = self.path("sharded")
        os.makedirs(d, exist_ok=True)
        emb = torch.randn(5, 3)
        w = torch.randn(3, 4)
        shards = {"pytorch_model-00001-of-00002.bin": {"embed.weight": emb, "lm_head.weight": emb},
                  "pytorch_model-00002-of-00002.bin": {"fc.weight": w.t(), "fc.bias": torch.ones(4)}}
        weight_map, state = {}, {}
        for name, sd in shards.items():
            torch.save(sd, os.path.join(d, name))
            weight_map.update({k: name for k in sd})
            state.update(torch.load(os.path.join(d, name)))
        index = os.path.join(d, "pytorch_model.bin.index.json")
        with open(index, "w") as f:
            json.dump({"metadata": {"total_size": 4 * (15 + 12 + 4)}, "weight_map": weight_map}, f)
        # The directory holds no safetensors: it is read through its index.
        self.assertEqual(self.ok("schema", d)[0], self.ok("schema", index)[0])
        tensors, meta = self.convert(index, recipe='map "fc.weight" = x * 2\n')
        self.assertEqual(sorted(tensors), ["embed.weight", "fc.bias", "fc.weight"])
        for name in ("embed.weight", "fc.bias"):
            self.assertEqual(tensors[name][1].tobytes(), plain(state[name]).tobytes(), name)
        self.assertEqual(tensors["fc.weight"][1].tobytes(),
                         plain(state["fc.weight"] * 2).tobytes())
        self.assertEqual(json.loads(meta["surg.ties"]), {"lm_head.weight": "embed.weight"})
        out, err = self.ok("schema", index)
        self.assertIn('tied: "lm_head.weight" is stored as "embed.weight"', out)
        self.assertEqual(err, "")
        # The index and the shards must agree, as for safetensors.
        with open(index, "w") as f:
            wm = dict(weight_map, **{"fc.bias": "pytorch_model-00001-of-00002.bin"})
            json.dump({"weight_map": wm}, f)
        self.refused(index, "shard-misplaced-tensor", "pytorch_model-00002-of-00002.bin")
        with open(index, "w") as f:
            json.dump({"weight_map": dict(weight_map, extra="model.safetensors")}, f)
        self.refused(index, "shard-format", "two formats")

    def test_lone_tensor(self):
        p = self.path("lone.pt")
        tensors, _ = self.convert(p)
        self.assertEqual(list(tensors), ["lone"])
        self.assertEqual(tensors["lone"][1].tobytes(), plain(torch.load(p)).tobytes())

    def test_classic_conversion(self):
        """surg run convert.surg pytorch_model.bin model.safetensors, with
        the example recipe (comments only)."""
        src = self.path("hf/pytorch_model.bin")
        out = self.path("hf/model.safetensors")
        self.ok("run", os.path.join(ARGS.examples, "convert.surg"), src, out)
        tensors, meta, _ = stnp.load(out)
        self.assert_same(tensors, meta, torch.load(src))
        self.assertEqual(json.loads(meta["surg.ties"]),
                         {"lm_head.weight": "embed_tokens.weight"})
        self.assertEqual(meta["format"], "pt")
        # The tie is reported by schema, of the PyTorch file and of the result.
        for path in (src, out):
            tree, _ = self.ok("schema", path)
            self.assertIn('tied: "lm_head.weight" is stored as "embed_tokens.weight"\n', tree)

    def test_npz_output(self):
        """Into an .npz, every name (tied ones too) is an array."""
        p = self.path("views.pt")
        out = self.path("views.npz")
        obj = torch.load(p)
        self.ok("run", self.recipe('drop "{b,bt}"\n'), p, out)
        got = np.load(out)
        self.assertEqual(sorted(got.files), sorted(n for n, _ in flatten(obj) if n[0] != "b"))
        for name, t in flatten(obj):
            if name[0] != "b":
                np.testing.assert_array_equal(got[name], plain(t), err_msg=name)

    def test_check_against_target(self):
        p = self.path("module.pth")
        target = self.path("target.json")
        with open(target, "w") as f:
            json.dump({k: {"dtype": ST[v.dtype], "shape": list(v.shape)}
                       for k, v in torch.load(p).items()}, f)
        out, _ = self.ok("check", self.recipe(""), "--from", p, "--to", target)
        self.assertIn("ok", out)


class TestByHand(PtCase):
    def test_v3_dtypes(self):
        """_rebuild_tensor_v3 over an UntypedStorage (uint16, float8), with
        a strided view, as newer PyTorch writes them."""
        u16 = np.arange(1, 13, dtype="<u2") * 1001
        f8 = np.arange(16, dtype=np.uint8)
        pkl = pk_dict([("u", pk_v3("0", 24, b"uint16", 0, (3, 4), (4, 1))),
                       ("ut", pk_v3("0", 24, b"uint16", 1, (2, 3), (1, 4))),
                       ("f8", pk_v3("1", 16, b"float8_e4m3fn", 2, (7,), (2,)))])
        p = self.path("v3.pt")
        write_zip(p, [("v3/data.pkl", pkl), ("v3/data/0", u16.tobytes()),
                      ("v3/data/1", f8.tobytes()), ("v3/version", b"3\n")])
        tensors, _ = self.convert(p)
        self.assertEqual(tensors["u"][0], "U16")
        np.testing.assert_array_equal(tensors["u"][1], u16.reshape(3, 4))
        want = np.lib.stride_tricks.as_strided(u16[1:], (2, 3), (2, 8))
        np.testing.assert_array_equal(tensors["ut"][1], want)
        self.assertEqual(tensors["f8"][0], "F8_E4M3")
        np.testing.assert_array_equal(tensors["f8"][1], f8[2::2][:7])

    def test_big_endian(self):
        """A file from a big-endian machine (its byteorder record says so,
        under a prefix of 300 characters): every tensor is swapped, views
        gathered as well."""
        src = self.path("be_src.pt")
        a = torch.randn(3, 4)
        obj = {"a": a, "at": a.t(), "i": torch.arange(5, dtype=torch.int16),
               "c": torch.complex(a, a + 1), "u": torch.arange(4, dtype=torch.uint8)}
        torch.save(obj, src)
        swap = {"0": ">f4", "1": ">i2", "2": ">c8", "3": "u1"}  # storages in pickle order
        items = []
        for name, data in entries(src):
            key = name.split("/data/")[-1] if "/data/" in name else None
            if key is not None:
                native = np.frombuffer(data, np.dtype(swap[key]).newbyteorder("<"))
                data = native.astype(swap[key]).tobytes()
            items.append((name.replace("be_src/", LONG_PREFIX), data))
        items.append((LONG_PREFIX + "byteorder", b"big"))
        p = self.path("be.pt")
        write_zip(p, items)
        tensors, meta = self.convert(p)
        self.assert_same(tensors, meta, obj)

    def test_zip64(self):
        """The same archive with ZIP64 sizes in every entry's local header
        (as zip writers add for entries that may pass 4 GiB), under another
        prefix: the same tensors. (ZIP64 end records and directory fields are
        tested with the zip reader itself, in test_npz and py_npz.)"""
        src = self.path("module.pth")
        p = self.path("zip64.pt")
        with zipfile.ZipFile(p, "w") as z:
            for name, data in entries(src):
                info = zipfile.ZipInfo(name.replace("module/", "renamed_archive/"))
                with z.open(info, "w", force_zip64=True) as f:
                    f.write(data)
        with open(p, "rb") as f:
            self.assertIn(b"data.pkl\x01\x00\x10\x00", f.read())  # the ZIP64 extra field
        tensors, meta = self.convert(p)
        self.assert_same(tensors, meta, torch.load(src))

    def test_overlapping_views(self):
        """Views sharing storage bytes but not the same view are separate
        tensors, each with its own values."""
        w = torch.arange(10.0)
        obj = {"a": w[0:6], "b": w[4:10], "c": w[0:6].view(2, 3), "d": w[::3]}
        p = self.path("overlap.pt")
        torch.save(obj, p)
        tensors, meta = self.convert(p)
        self.assert_same(tensors, meta, torch.load(p))
        self.assertNotIn("surg.ties", meta)


class TestRefused(PtCase):
    def test_code_is_never_run(self):
        """Files whose unpickling runs a command (os.system, eval,
        and a pickle written by hand naming os.system) are refused, and the
        command does not run."""
        marker = self.path("ran")
        cases = [("evil_system.pt", "posix.system"), ("evil_eval.pt", "__builtin__.eval")]
        hand = self.path("evil_os.pt")
        items = [(n.replace("evil_system/", "archive/"),
                  d.replace(b"cposix\nsystem\n", b"cos\nsystem\n")) for n, d in
                 entries(self.path("evil_system.pt"))]
        write_zip(hand, items)
        cases.append(("evil_os.pt", "os.system"))
        for name, target in cases:
            for run in (False, True):
                err = self.refused(self.path(name), "pt-global", f'"{target}"', run=run)
                self.assertIn("nothing was run", err)
        self.assertEqual([n for n in os.listdir(TMP.name) if n.startswith("ran")], [])
        # They are live: PyTorch's own loader would run them.
        torch.load(self.path("evil_system.pt"))
        torch.load(hand)
        torch.load(self.path("evil_eval.pt"))
        self.assertTrue(os.path.exists(marker + "-system"))
        self.assertTrue(os.path.exists(marker + "-eval"))
        for n in ("-system", "-eval"):
            os.remove(marker + n)

    def test_legacy(self):
        err = self.refused(self.path("legacy.pt"), "pt-legacy", "legacy format")
        self.assertIn("re-save it with torch.save in PyTorch 1.6 or newer", err)

    def test_unknown_objects(self):
        self.refused(self.path("datetime.pt"), "pt-global", '"datetime.datetime"')
        err = self.refused(self.path("script.pt"), "pt-global", "__torch__")
        self.assertIn("TorchScript", err)
        # A tensor where no name can be made for it.
        for name, obj, text in (("set.pt", {"s": {torch.ones(1)}}, "a set"),
                                ("floatkey.pt", {"a": {1.5: torch.ones(1)}}, '"a" is a float')):
            p = self.path(name)
            torch.save(obj, p)
            self.refused(p, "pt-name", text)

    def broken(self, name, change):
        """module.pth rewritten: change(name, data) gives new bytes, or None
        to leave the entry out."""
        items = []
        for n, d in entries(self.path("module.pth")):
            d = change(n, d)
            if d is not None:
                items.append((n.replace("module/", "broken/"), d))
        p = self.path(name)
        write_zip(p, items)
        return p

    def test_broken_archives(self):
        p = self.broken("missing.pt", lambda n, d: None if n.endswith("data/2") else d)
        self.refused(p, "pt-storage", "is not in the archive")
        p = self.broken("short.pt", lambda n, d: d[:-4] if n.endswith("data/0") else d)
        self.refused(p, "pt-storage", "holds 140 bytes")
        p = self.broken("nopkl.pt", lambda n, d: None if n.endswith("data.pkl") else d)
        self.refused(p, "pt-archive", "no entry")
        p = self.broken("trunc.pt", lambda n, d: d[:-20] if n.endswith("data.pkl") else d)
        self.refused(p, "pt-pickle", "truncated")
        p = self.broken("byteorder.pt", lambda n, d: d)
        write_zip(p, entries(p) + [("broken/byteorder", b"middle")])
        self.refused(p, "pt-archive", "neither")
        # a storage deflated: torch.save never does, and it cannot be read in place
        p = self.path("deflated.pt")
        write_zip(p, entries(self.path("module.pth")), compress=lambda n: "/data/" in n)
        self.refused(p, "pt-storage", "compressed")
        # not a zip at all, or a zip that is no torch.save file
        p = self.path("text.bin")
        with open(p, "wb") as f:
            f.write(b"hello, world\n" * 10)
        self.refused(p, "zip-no-end", "not a zip archive")
        p = self.path("other.pt")
        write_zip(p, [("a.txt", b"x")])
        self.refused(p, "pt-archive", "no entry")

    def test_bad_views(self):
        def pkl(offset, size, stride, numel=6):
            return pk_dict([("w", pk_v2("0", numel, offset, size, stride))])

        data = np.arange(6, dtype="<f4").tobytes()
        for i, (offset, size, stride, text) in enumerate([
                (1, (2, 3), (3, 1), "reaches past the 24 bytes"),
                (0, (3, 3), (0, 3), "reaches past"),
                (0, (1 << 62, 4), (1, 1), "overflows"),
                (0, (2, 2), (1 << 62, 1 << 62), "reaches past")]):
            p = self.path(f"view{i}.pt")
            write_zip(p, [("v/data.pkl", pkl(offset, size, stride)), ("v/data/0", data)])
            self.refused(p, "pt-view", text)

    def test_view_bomb(self):
        """A stride of 0 repeats one element: 16384 x 16384 of them (1 GiB)
        from a file of a few hundred bytes is refused before anything is
        written; the same view at a sane size is read."""
        for n, ok in ((16384, False), (64, True)):
            p = self.path(f"expand{n}.pt")
            write_zip(p, [("e/data.pkl", pk_dict([("x", pk_v2("0", 1, 0, (n, n), (0, 0)))])),
                          ("e/data/0", np.float32(1.5).tobytes())])
            if ok:
                tensors, _ = self.convert(p)
                np.testing.assert_array_equal(tensors["x"][1], np.full((n, n), 1.5, np.float32))
            else:
                self.refused(p, "pt-view", "refused as a bomb", run=True)

    def test_lazy_views(self):
        """A conjugate or negative view saved lazily (PyTorch's metadata
        says so) has values that are not its storage's: refused, not
        carried wrong. Metadata that says nothing is fine."""
        data = np.arange(4, dtype="<f4").tobytes()
        true, false = b"\x88", b"\x89"
        for i, (md, ok) in enumerate([(b"}", True), (b"N", True),
                                      (b"}" + pk_str("neg") + false + b"s", True),
                                      (b"}" + pk_str("conj") + true + b"s", False),
                                      (b"}" + pk_str("neg") + true + b"s", False)]):
            p = self.path(f"lazy{i}.pt")
            write_zip(p, [("l/data.pkl", pk_dict([("x", pk_v2("0", 4, 0, (4,), (1,), md))])),
                          ("l/data/0", data)])
            if ok:
                tensors, _ = self.convert(p)
                self.assertEqual(tensors["x"][1].tobytes(), data)
            else:
                self.refused(p, "pt-tensor", "lazy view", run=True)

    def test_name_bomb(self):
        """A 100 kB key in 99 nested dicts, the whole referenced 2000 times
        through the memo: names of gigabytes from a 110 kB pickle, refused
        at once."""
        key = pk_str("k" * 100000) + b"q\x00"
        inner = pk_v2("0", 1, 0, (), ()) + b"q\x01" + b"0"
        body = key + b"0" + inner
        nest = b"h\x01"
        for _ in range(99):
            nest = b"}h\x00" + nest + b"s"
        body += nest + b"r\x02\x00\x00\x00" + b"0"
        body += b"](" + b"j\x02\x00\x00\x00" * 2000 + b"e"
        p = self.path("names.pt")
        write_zip(p, [("n/data.pkl", b"\x80\x02" + body + b"."),
                      ("n/data/0", np.float32(0).tobytes())])
        self.refused(p, "pt-pickle-shape", "names would take more than")

    def test_duplicate_names(self):
        t = torch.zeros(2)
        p = self.path("dup.pt")
        torch.save({"a.b": t, "a": {"b": torch.ones(2)}}, p)
        self.refused(p, "pt-name", 'flatten to the name "a.b"')
        p = self.path("tuplekey.pt")
        torch.save({("x", 1): t}, p)
        self.refused(p, "pt-name", "a tuple")

    def test_pt_output(self):
        rc, _, err = run_surg(ARGS.surg, "run", self.recipe(""), self.path("module.pth"),
                              self.path("out.pt"))
        self.assertEqual(rc, 2)
        self.assertIn("does not write them", err)
        self.assertFalse(os.path.exists(self.path("out.pt")))


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--surg", required=True, help="the surg executable")
    parser.add_argument("--examples", required=True, help="the examples/ folder")
    ARGS, rest = parser.parse_known_args()
    ARGS.surg = os.path.abspath(ARGS.surg)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
