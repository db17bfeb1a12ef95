"""test_ties.py: tied names and LoRA records end to end. A PyTorch file
whose output head is its embedding, written by real torch.save, goes
through `surg run`; the result is read back with stnp, its recorded ties
applied, and loaded into the same nn.Module with load_state_dict (strict),
values compared with what torch.load gives. LoRA records of a first run are
read back by a second: renames carry them, drops end them with a warning
(the metadata parsed and compared, the warning compared as text).

usage: test_ties.py --surg SURG [unittest args]
"""

import argparse
import json
import os
import sys
import tempfile
import unittest

import numpy as np
import torch

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stnp  # noqa: E402
from runutil import run_surg  # noqa: E402

ARGS = None  # filled in by main()


class TiedLM(torch.nn.Module):
    """A language model whose output head is its embedding, as Hugging Face
    ties them."""

    def __init__(self):
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(11, 4)
        self.norm = torch.nn.LayerNorm(4)
        self.lm_head = torch.nn.Linear(4, 11, bias=False)
        self.lm_head.weight = self.embed_tokens.weight


class WithValueHead(torch.nn.Module):
    """TiedLM under "model." beside a head a port leaves behind."""

    def __init__(self):
        super().__init__()
        self.model = TiedLM()
        self.value_head = torch.nn.Linear(4, 1)


def state_dict_of(path):
    """A safetensors result as torch tensors, every recorded tie applied (a
    tied name gets its stored tensor), and the recorded ties."""
    tensors, meta, _ = stnp.load(path)
    sd = {name: torch.from_numpy(np.array(arr)) for name, (_, arr) in tensors.items()}
    ties = json.loads((meta or {}).get("surg.ties", "{}"))
    for alias, stored in ties.items():
        sd[alias] = sd[stored]
    return sd, ties, meta or {}


class Case(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="surg-ties-")
        self.tmp = self._tmp.name
        torch.manual_seed(0)

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp, name)

    def run_recipe(self, text, inp, out="out.safetensors"):
        """surg run; must succeed. Returns (stderr, out path)."""
        r = self.path("r.surg")
        with open(r, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        o = self.path(out)
        code, _, err = run_surg(ARGS.surg, "run", r, inp, o)
        self.assertEqual(code, 0, err)
        return err, o


class TestTiedPyTorch(Case):
    def save_model(self):
        m = WithValueHead()
        p = self.path("pytorch_model.bin")
        torch.save(m.state_dict(), p)
        return p, torch.load(p)

    def test_keep_and_rename_carry_the_tie(self):
        """The issue's case: keep "model.**"; rename "model.**" -> "$1". The
        tied head moves with the pattern, so the result loads into TiedLM."""
        p, src = self.save_model()
        _, out = self.run_recipe('keep "model.**"\nrename "model.**" -> "$1"', p)
        sd, ties, _ = state_dict_of(out)
        self.assertEqual(ties, {"lm_head.weight": "embed_tokens.weight"})
        m = TiedLM()
        m.load_state_dict(sd)  # strict: every key, no other
        self.assertIs(m.lm_head.weight, m.embed_tokens.weight)
        for name, t in m.state_dict().items():
            self.assertTrue(torch.equal(t, src["model." + name]), name)

    def test_drop_the_stored_tensor(self):
        """Dropping the embedding the head is tied to: the head takes over
        its data (it was silently lost before)."""
        p, src = self.save_model()
        _, out = self.run_recipe('drop "model.embed_tokens.weight"', p)
        tensors, meta, _ = stnp.load(out)
        self.assertNotIn("surg.ties", meta or {})
        self.assertEqual(sorted(tensors), ["model.lm_head.weight", "model.norm.bias",
                                           "model.norm.weight", "value_head.bias",
                                           "value_head.weight"])
        np.testing.assert_array_equal(tensors["model.lm_head.weight"][1],
                                      src["model.embed_tokens.weight"].numpy())

    def test_drop_and_keep_the_tied_name(self):
        p, src = self.save_model()
        for text in ('drop "model.lm_head.weight"', 'keep "model.embed_tokens.weight"'):
            _, out = self.run_recipe(text, p)
            sd, ties, _ = state_dict_of(out)
            self.assertEqual(ties, {}, text)
            self.assertNotIn("model.lm_head.weight", sd, text)
            self.assertTrue(torch.equal(sd["model.embed_tokens.weight"],
                                        src["model.embed_tokens.weight"]), text)

    def test_untie(self):
        """untie: the head becomes a tensor of its own with equal bytes, a
        copy (never decoded), and the result loads into an untied model."""
        p, src = self.save_model()
        text = 'keep "model.**"\nrename "model.**" -> "$1"\nuntie "lm_head.weight"'
        r = self.path("u.surg")
        with open(r, "w") as f:
            f.write(text + "\n")
        code, plan, err = run_surg(ARGS.surg, "plan", r, "--from", p)
        self.assertEqual(code, 0, err)
        self.assertNotIn("tied:", plan)
        line = [x for x in plan.splitlines() if x.lstrip().startswith("lm_head.weight")]
        self.assertEqual(len(line), 1, plan)
        self.assertIn("copy", line[0])
        err, out = self.run_recipe(text, p)
        tensors = stnp.load_raw(out)[0]
        self.assertNotIn("surg.ties", stnp.load(out)[1] or {})
        self.assertEqual(tensors["lm_head.weight"][2], tensors["embed_tokens.weight"][2])
        self.assertEqual(tensors["lm_head.weight"][2],
                         src["model.embed_tokens.weight"].numpy().tobytes())
        m = TiedLM()
        m.lm_head.weight = torch.nn.Parameter(torch.empty(11, 4))  # untied
        sd, _, _ = state_dict_of(out)
        m.load_state_dict(sd)
        self.assertIsNot(m.lm_head.weight, m.embed_tokens.weight)
        self.assertTrue(torch.equal(m.lm_head.weight, src["model.lm_head.weight"]))

    def test_tie_statement_then_drop(self):
        """tie A = B; drop B: A keeps B's data (it went with B before)."""
        p, src = self.save_model()
        _, out = self.run_recipe('tie "model.norm.weight" = "model.norm.bias"\n'
                                 'drop "model.norm.bias"', p)
        tensors, meta, _ = stnp.load(out)
        self.assertNotIn("model.norm.bias", tensors)
        self.assertEqual(json.loads(meta["surg.ties"]),
                         {"model.lm_head.weight": "model.embed_tokens.weight"})
        np.testing.assert_array_equal(tensors["model.norm.weight"][1],
                                      src["model.norm.bias"].numpy())

    def test_schema_shows_the_moved_tie(self):
        p, _ = self.save_model()
        _, out = self.run_recipe('keep "model.**"\nrename "model.**" -> "$1"', p)
        code, tree, err = run_surg(ARGS.surg, "schema", out)
        self.assertEqual(code, 0, err)
        self.assertIn('tied: "lm_head.weight" is stored as "embed_tokens.weight"\n', tree)


class TestRecordedTies(Case):
    def test_name_recorded_twice(self):
        """A "surg.ties" record naming one tied name twice: tied once, to the
        first target in byte order, said (it was tied twice before)."""
        inp = self.path("in.safetensors")
        e, f = np.ones(2, np.float32), np.zeros(2, np.float32)
        stnp.save(inp, {"e": ("F32", e), "f": ("F32", f)},
                  metadata={"surg.ties": '{"h": "f", "h": "e"}'})
        err, out = self.run_recipe('keep "**"', inp)
        self.assertEqual(err, f'{inp}: warning: "h" is recorded as tied to "e" and to "f"; '
                              'it is tied to "e"\n')
        _, ties, _ = state_dict_of(out)
        self.assertEqual(ties, {"h": "e"})


class TestLoraRecords(Case):
    def first_run(self):
        """A first run adds an adapter to "fc.weight"; its result records it."""
        w = np.arange(12, dtype=np.float32).reshape(4, 3)
        inp = self.path("in.safetensors")
        stnp.save(inp, {"fc.weight": ("F32", w), "fc.bias": ("F32", np.zeros(4, np.float32))})
        _, out = self.run_recipe('init-lora "fc.weight" rank 2', inp, out="lora.safetensors")
        meta = stnp.load(out)[1]
        self.assertEqual(json.loads(meta["surg.lora"]), [self.record("fc")])
        return out

    @staticmethod
    def record(module):
        return {"r": 2, "lora_alpha": 2, "style": "peft", "target": f"{module}.weight",
                "lora_a": f"base_model.model.{module}.lora_A.weight",
                "lora_b": f"base_model.model.{module}.lora_B.weight"}

    def test_rename_in_the_same_recipe(self):
        w = np.ones((4, 3), np.float32)
        inp = self.path("in.safetensors")
        stnp.save(inp, {"fc.weight": ("F32", w)})
        _, out = self.run_recipe('init-lora "fc.weight" rank 2\nrename "**fc.**" -> "$1proj.$2"',
                                 inp)
        meta = stnp.load(out)[1]
        self.assertEqual(json.loads(meta["surg.lora"]), [self.record("proj")])

    def test_rename_in_a_later_run(self):
        first = self.first_run()
        err, out = self.run_recipe('rename "**fc.**" -> "$1proj.$2"', first)
        self.assertNotIn("warning", err)
        meta = stnp.load(out)[1]
        self.assertEqual(json.loads(meta["surg.lora"]), [self.record("proj")])

    def test_drop_the_adapter(self):
        first = self.first_run()
        r = self.path("r.surg")
        a, b = "base_model.model.fc.lora_A.weight", "base_model.model.fc.lora_B.weight"
        for text, gone in (('drop "base_model.model.fc.lora_*.weight"', a),
                           (f'keep "fc.weight", "{a}"', b),
                           ('drop "fc.weight"', "fc.weight")):
            err, out = self.run_recipe(text, first)
            self.assertEqual(
                err,
                f"{r}:1:1: warning: the LoRA record of \"fc.weight\" (adapter "
                f"\"{a}\", \"{b}\") is dropped: \"{gone}\" is gone\n"
                f"    1 | {text}\n      | {'^' + '~' * (len(text) - 1)}\n")
            self.assertNotIn("surg.lora", stnp.load(out)[1] or {})

    def test_record_that_does_not_fit(self):
        """A record naming tensors the input lacks is dropped, said once."""
        inp = self.path("in.safetensors")
        rec = self.record("fc")
        stnp.save(inp, {"fc.weight": ("F32", np.ones((4, 3), np.float32))},
                  metadata={"surg.lora": json.dumps([rec])})
        err, out = self.run_recipe('rename "fc.weight" -> "w"', inp)
        self.assertEqual(
            err, f"{inp}: warning: the recorded LoRA adapter of \"fc.weight\" "
                 "(\"base_model.model.fc.lora_A.weight\", \"base_model.model.fc.lora_B.weight\") "
                 "does not fit the tensors here; it is dropped\n")
        self.assertNotIn("surg.lora", stnp.load(out)[1] or {})

    def test_records_that_are_not_records(self):
        """Metadata that is not a list of records is dropped with what is wrong;
        a record with a field out of range does not fit."""
        inp = self.path("in.safetensors")
        w = {"fc.weight": ("F32", np.ones((4, 3), np.float32))}
        for text, why in (('{"r": 2}', "expected '[' but found '{'"),
                          ('[{"r": 2, "lora_alpha": "two"}]',
                           "expected a number but found '\"'"),
                          ('[{"r": 2, "use_rslora": 1}]',
                           "expected true or false but found '1'"),
                          ('[1]', "expected '{' but found '1'")):
            stnp.save(inp, w, metadata={"surg.lora": text})
            err, out = self.run_recipe('keep "**"', inp)
            self.assertEqual(err, f"{inp}: warning: the \"surg.lora\" metadata is not a list "
                                  f"of LoRA records ({why}); it is dropped\n", text)
            self.assertNotIn("surg.lora", stnp.load(out)[1] or {})
        rec = dict(self.record("fc"), r=0)
        stnp.save(inp, w, metadata={"surg.lora": json.dumps([rec])})
        err, _ = self.run_recipe('keep "**"', inp)
        self.assertIn("does not fit the tensors here; it is dropped", err)


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--surg", required=True, help="the surg executable")
    ARGS, rest = parser.parse_known_args()
    ARGS.surg = os.path.abspath(ARGS.surg)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
