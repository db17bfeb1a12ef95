"""_api.py: check, plan, run, schema and schema_of over the public API, as
the command does them (cli/compiled.c): open the recipe, the input and the
target, compile for the output, check against the target, plan, run."""

import ctypes
import json
import os
import shutil
import tempfile
from collections.abc import Mapping

from . import _lib
from ._diag import Collector
from ._schema import Schema, Tensor, tensors_of

L = _lib.lib


class _Call:
    """What one call opened (freed at its end, in reverse) and what it
    reported. Schema objects given as inputs are written to a temporary
    directory, removed at the end too."""

    def __init__(self):
        self.diag = Collector()
        self._frees = []
        self._tmp = None
        self.read = []      # recipe files read: no output may replace them
        self.opened = []    # checkpoints opened beside the input (a target)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for fn, handle in reversed(self._frees):
            fn(handle)
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def keep(self, fn, handle):
        if handle:
            self._frees.append((fn, handle))
        return handle

    def schema_file(self, schema):
        """A schema object as a .json file for the library; diagnostics
        naming the file name it as the schema's name."""
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="surg-py-")
        path = os.path.join(self._tmp, f"schema-{len(self.diag.rename)}.json")
        with open(path, "w", encoding="utf-8") as f:
            f.write(schema.json())
        b = os.fsencode(path)
        self.diag.rename[b] = os.fsencode(schema.name)
        return b

    def fail_if(self, status):
        if status:
            self.diag.fail(status)


def _fs(path):
    return None if path is None else os.fsencode(path)


def _enc(s):
    return None if s is None else s.encode()


def _is_path(x):
    return isinstance(x, (str, bytes, os.PathLike))


def _is_inputs(x):
    """A dict NAME -> path (or schema): several inputs, as --in NAME=PATH."""
    return isinstance(x, Mapping) and not isinstance(x, Schema) and len(x) > 0 and \
        all(isinstance(k, str) and (_is_path(v) or isinstance(v, Schema)) for k, v in x.items())


def _looks_like_recipe_path(s):
    return "\n" not in s and (s.endswith(".surg") or os.path.isfile(s))


def _recipe(call, recipe):
    """Parse or load the recipe: a path (os.PathLike, or a str naming a file
    or ending in .surg) is read; other text is the recipe itself, named
    "<recipe>" in diagnostics."""
    out = ctypes.c_void_p()
    if isinstance(recipe, os.PathLike) or (isinstance(recipe, str) and
                                           _looks_like_recipe_path(recipe)):
        path = os.fsencode(recipe)
        call.read.append(path)
        st = L.surg_recipe_load(path, call.diag.ref(), ctypes.byref(out))
    else:
        text = recipe.encode() if isinstance(recipe, str) else bytes(recipe)
        st = L.surg_recipe_parse(b"<recipe>", text, len(text), call.diag.ref(),
                                 ctypes.byref(out))
    call.keep(L.surg_recipe_free, out.value)
    return st, out.value


def _open(call, source, fmt):
    """Open an input or target: a path, a Schema, a dict NAME -> path or
    Schema (named inputs), or any tree schema_of takes."""
    out = ctypes.c_void_p()
    if _is_inputs(source):
        keep = [(_enc(name), call.schema_file(p) if isinstance(p, Schema) else _fs(p))
                for name, p in source.items()]
        arr = (_lib.Input * len(keep))(*[_lib.Input(n, p, _enc(fmt)) for n, p in keep])
        st = L.surg_ckpt_open_inputs(arr, len(keep), call.diag.ref(), ctypes.byref(out))
    else:
        if not _is_path(source):
            source = source if isinstance(source, Schema) else schema_of(source)
        path = call.schema_file(source) if isinstance(source, Schema) else _fs(source)
        st = L.surg_ckpt_open_as(path, _enc(fmt), call.diag.ref(), ctypes.byref(out))
    call.keep(L.surg_ckpt_close, out.value)
    return st, out.value


def _tensor(info):
    t = info.contents
    return t.name.decode("utf-8", "surrogateescape"), \
        Tensor(L.surg_dtype_st_name(t.dtype).decode(), tuple(t.shape[i] for i in range(t.rank)))


def _entries(count, at, handle):
    out = {}
    for i in range(count(handle)):
        e = at(handle, i).contents
        out[e.key.decode("utf-8", "surrogateescape")] = e.value.decode("utf-8", "surrogateescape")
    return out


def _ckpt_schema(ck, name):
    text = ctypes.c_void_p()
    if L.surg_ckpt_schema_json(ck, ctypes.byref(text)):
        raise MemoryError("surg: out of memory writing a schema")
    tensors = dict(_tensor(L.surg_ckpt_tensor(ck, i)) for i in range(L.surg_ckpt_count(ck)))
    return Schema(tensors, _entries(L.surg_ckpt_meta_count, L.surg_ckpt_meta, ck),
                  _entries(L.surg_ckpt_tie_count, L.surg_ckpt_tie, ck), name=name,
                  text=_lib.take_string(text.value).decode("utf-8", "surrogateescape"))


def _result(prog):
    """The abstract state a compiled recipe produces."""
    tensors = dict(_tensor(L.surg_program_output(prog, i))
                   for i in range(L.surg_program_output_count(prog)))
    return Schema(tensors, ties=_entries(L.surg_program_alias_count, L.surg_program_alias, prog),
                  name="<result>")


def _compile(call, recipe, source, target, fmt, output=None, out_format=None):
    """Open everything first (a missing file is reported before any recipe
    error), then compile for the output and check against the target."""
    st, rec = _recipe(call, recipe)
    st_from, ck = _open(call, source, fmt)
    st_to, to = _open(call, target, fmt) if target is not None else (0, None)
    st = max(st, st_from, st_to)
    prog = ctypes.c_void_p()
    if not st:
        opts = _lib.CompileOpts(_fs(output), None, 0, _enc(out_format))
        st = L.surg_compile_for(rec, ck, ctypes.byref(opts), call.diag.ref(), ctypes.byref(prog))
        call.keep(L.surg_program_free, prog.value)
    if not st and to:
        st = L.surg_program_check_target(prog, to, call.diag.ref())
        call.opened.append(to)
    call.fail_if(st)
    return prog.value


def _plan(call, prog, threads):
    pl = ctypes.c_void_p()
    call.fail_if(L.surg_plan_build(prog, _threads(threads), ctypes.byref(pl)))
    return call.keep(L.surg_plan_free, pl.value)


def _threads(threads):
    n = threads if threads is not None else (os.cpu_count() or 1)
    if not isinstance(n, int) or not 1 <= n <= 1024:
        raise ValueError(f"surg: threads takes a number from 1 to 1024, not {threads!r}")
    return n


def schema(path, *, format=None):
    """The abstract state of a checkpoint or schema file (headers only), as
    `surg schema --json` writes it: schema(p).json() is its text."""
    with _Call() as call:
        st, ck = _open(call, os.fspath(path), format)
        call.fail_if(st)
        result = _ckpt_schema(ck, os.fsdecode(path))
    call.diag.warn()
    return result


def schema_of(tree, *, sep="/", variable_value=False, name="<schema_of>"):
    """A Schema of a tree of arrays or of their shapes: NumPy arrays,
    jax.ShapeDtypeStruct (jax.eval_shape), PyTorch tensors (the meta device
    too), a flax.nnx State, in dicts, lists, tuples, namedtuples and
    dataclasses. Names join the keys with `sep` ("/", as the Flax and Orbax
    readers name tensors; a state_dict's keys are names already and are
    kept). Checked by the library as a schema file is (dtypes, names)."""
    flat = tensors_of(tree, sep=sep, variable_value=variable_value)
    draft = Schema({k: Tensor(d, s) for k, (d, s) in flat.items()}, name=name,
                   text=json.dumps({k: {"dtype": d, "shape": list(s)}
                                    for k, (d, s) in flat.items()}))
    with _Call() as call:
        st, ck = _open(call, draft, None)
        call.fail_if(st)
        result = _ckpt_schema(ck, name)
    call.diag.warn()
    return result


def check(recipe, source, target=None, *, format=None, output=None, out_format=None):
    """Compile a recipe against the abstract state of `source` (a checkpoint
    or schema path, a Schema, a tree for schema_of, or a dict NAME -> path
    of several inputs) and, with `target`, compare the result with it.
    Returns the result's Schema; raises SurgError with every diagnostic."""
    with _Call() as call:
        prog = _compile(call, recipe, source, target, format, output, out_format)
        result = _result(prog)
    call.diag.warn()
    return result


class Plan:
    """What `surg run` would do: `text` as `surg plan` prints it, `data` as
    `surg plan --json` writes it (parsed), `result` the output's Schema."""

    def __init__(self, text, data, result):
        self.text, self.data, self.result = text, data, result

    def __str__(self):
        return self.text


def plan(recipe, source, target=None, *, threads=None, format=None):
    """check, then the plan for `threads` threads (default: every core)."""
    with _Call() as call:
        prog = _compile(call, recipe, source, target, format)
        pl = _plan(call, prog, threads)
        text, data = (_lib.take_string(f(pl)) for f in (L.surg_plan_text, L.surg_plan_json))
        if text is None or data is None:
            raise MemoryError("surg: out of memory writing the plan")
        result = Plan(text.decode("utf-8", "replace"), json.loads(data), _result(prog))
    call.diag.warn()
    return result


def _size(v):
    if v is None or isinstance(v, int):
        return v or 0
    n = ctypes.c_uint64()
    if L.surg_parse_size(str(v).encode(), ctypes.byref(n)):
        raise ValueError(f"surg: max_shard_size takes a size such as 5GB, 500MiB or "
                         f"1000000, not {v!r}")
    return n.value


def _progress(fn, raised):
    """progress(done, total) for the library; what it raises is kept, to be
    raised when the run is over (a callback cannot stop it)."""
    def tick(_user, done, total):
        try:
            fn(done, total)
        except BaseException as e:  # never unwind through C
            raised.append(e)
    return _lib.PROGRESS_FN(tick) if fn else _lib.PROGRESS_FN()


def run(recipe, inputs, output, *, threads=None, target=None, format=None, out_format=None,
        max_shard_size=None, progress=None):
    """Apply a recipe to `inputs` (a checkpoint path, or a dict NAME -> path
    of several, each seen under "NAME/") and write the result to `output`,
    atomically, as `surg run` does. `progress(done, total)`, bytes made,
    is called about every 100 ms from one thread and once at the end.
    Returns the Schema written."""
    if not (_is_path(inputs) or _is_inputs(inputs)) or any(
            isinstance(v, Schema) for v in (inputs.values() if _is_inputs(inputs) else ())):
        raise TypeError("surg.run: inputs is a checkpoint path or a dict NAME -> path "
                        "(a schema has no data to run on)")
    if not _is_path(output):
        raise TypeError("surg.run: output is a path")
    shard = _size(max_shard_size)
    with _Call() as call:
        prog = _compile(call, recipe, inputs, target, format, output, out_format)
        pl = _plan(call, prog, threads)
        read = (ctypes.c_char_p * max(1, len(call.read)))(*call.read)
        opened = (ctypes.c_void_p * max(1, len(call.opened)))(*call.opened)
        raised = []
        tick = _progress(progress, raised)
        opts = _lib.RunOpts(threads=_threads(threads), max_shard_size=shard, progress=tick,
                            also_read=read, n_also_read=len(call.read),
                            also_opened=opened, n_also_opened=len(call.opened),
                            out_format=_enc(out_format))
        call.fail_if(L.surg_run(pl, _fs(output), ctypes.byref(opts), call.diag.ref()))
        result = _result(prog)
    call.diag.warn()
    if raised:
        raise raised[0]
    return result
