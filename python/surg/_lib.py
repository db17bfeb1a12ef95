"""_lib.py: finding libsurg.so and declaring, through ctypes, the part of
include/surg/surg.h the package calls. Nothing here knows recipes; it is
the C interface as Python sees it."""

import ctypes
import ctypes.util
import os

from . import __version__

# Where the library is looked for, in order (docs/python.md says the same):
#   1. $SURG_LIBRARY, the path of the file itself;
#   2. beside the package (a copy installed with it);
#   3. the build trees of a source checkout (python/surg/ -> build/);
#   4. the system's loader: libsurg.so.0 (the soname), then libsurg.so.
SONAME = "libsurg.so.0"
_HERE = os.path.dirname(os.path.abspath(__file__))
_BUILD_TREES = ("build", "build-asan")


def _candidates():
    env = os.environ.get("SURG_LIBRARY")
    if env:
        yield env
        return  # asked for one: no other may stand in for it
    for name in (SONAME, "libsurg.so"):
        yield os.path.join(_HERE, name)
    checkout = os.path.dirname(os.path.dirname(_HERE))
    if os.path.isfile(os.path.join(checkout, "include", "surg", "surg.h")):
        for tree in _BUILD_TREES:
            yield os.path.join(checkout, tree, "libsurg.so")
    yield SONAME
    found = ctypes.util.find_library("surg")
    if found:
        yield found


def _load():
    tried = []
    for path in _candidates():
        # A bare name goes to the loader; a path must exist to be tried.
        if os.sep in path and not os.path.exists(path):
            tried.append(f"{path} (no such file)")
            continue
        try:
            return ctypes.CDLL(path)
        except OSError as e:
            tried.append(f"{path} ({e})")
    raise ImportError("surg: cannot load libsurg.so; set SURG_LIBRARY to its path, or install "
                      "it (cmake --install) where the loader finds it. Tried: "
                      + "; ".join(tried))


lib = _load()
_libc = ctypes.CDLL(None)
_libc.free.argtypes = [ctypes.c_void_p]
_libc.free.restype = None

c_char_p, c_size_t, c_int, c_uint, c_void_p = (ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int,
                                             ctypes.c_uint, ctypes.c_void_p)
c_uint32, c_uint64 = ctypes.c_uint32, ctypes.c_uint64
P = ctypes.POINTER

# surg_severity, in order
SEVERITIES = ("error", "warning", "note")


class Diag(ctypes.Structure):
    _fields_ = [("severity", c_int), ("code", c_char_p), ("file", c_char_p),
                ("line", c_uint32), ("col", c_uint32), ("end_line", c_uint32),
                ("end_col", c_uint32), ("source_line", c_char_p), ("message", c_char_p),
                ("notes", P(c_char_p)), ("n_notes", c_size_t)]


DIAG_FN = ctypes.CFUNCTYPE(None, P(Diag), c_void_p)


class Sink(ctypes.Structure):
    _fields_ = [("fn", DIAG_FN), ("user", c_void_p), ("errors", c_uint), ("warnings", c_uint)]


class TensorInfo(ctypes.Structure):
    _fields_ = [("name", c_char_p), ("dtype", c_int), ("rank", c_uint32),
                ("shape", P(c_uint64)), ("nelems", c_uint64), ("nbytes", c_uint64)]


class MetaEntry(ctypes.Structure):
    _fields_ = [("key", c_char_p), ("value", c_char_p)]


class Part(ctypes.Structure):
    _fields_ = [("prefix", c_char_p), ("path", c_char_p)]


class Input(ctypes.Structure):
    _fields_ = [("name", c_char_p), ("path", c_char_p), ("format", c_char_p)]


class CompileOpts(ctypes.Structure):
    _fields_ = [("out_path", c_char_p), ("outputs", P(Part)), ("n_outputs", c_size_t),
                ("out_format", c_char_p), ("target", c_void_p)]


PROGRESS_FN = ctypes.CFUNCTYPE(None, c_void_p, c_uint64, c_uint64)


class RunPart(ctypes.Structure):  # surg_part: one part of a sharded output (count 0: all)
    _fields_ = [("index", ctypes.c_uint32), ("count", ctypes.c_uint32), ("source", c_int)]


class RunOpts(ctypes.Structure):
    _fields_ = [("threads", c_uint), ("max_shard_size", c_uint64), ("progress", PROGRESS_FN),
                ("progress_user", c_void_p), ("outputs", P(Part)), ("n_outputs", c_size_t),
                ("also_read", P(c_char_p)), ("n_also_read", c_size_t),
                ("also_opened", P(c_void_p)), ("n_also_opened", c_size_t),
                ("out_format", c_char_p), ("reflink", c_int), ("writers", c_uint),
                ("part", RunPart)]


# Opaque handles are plain pointers; a status is an int (0: SURG_OK).
_SIGNATURES = {
    "surg_version": (c_char_p, []),
    "surg_exit_code": (c_int, [c_int]),
    "surg_diag_text": (c_void_p, [P(Diag), c_int]),
    "surg_dtype_st_name": (c_char_p, [c_int]),
    "surg_ckpt_open_as": (c_int, [c_char_p, c_char_p, P(Sink), P(c_void_p)]),
    "surg_ckpt_open_inputs": (c_int, [P(Input), c_size_t, P(Sink), P(c_void_p)]),
    "surg_ckpt_close": (None, [c_void_p]),
    "surg_ckpt_count": (c_size_t, [c_void_p]),
    "surg_ckpt_tensor": (P(TensorInfo), [c_void_p, c_size_t]),
    "surg_ckpt_meta_count": (c_size_t, [c_void_p]),
    "surg_ckpt_meta": (P(MetaEntry), [c_void_p, c_size_t]),
    "surg_ckpt_tie_count": (c_size_t, [c_void_p]),
    "surg_ckpt_tie": (P(MetaEntry), [c_void_p, c_size_t]),
    "surg_ckpt_schema_json": (c_int, [c_void_p, P(c_void_p)]),
    "surg_recipe_parse": (c_int, [c_char_p, c_char_p, c_size_t, P(Sink), P(c_void_p)]),
    "surg_recipe_load": (c_int, [c_char_p, P(Sink), P(c_void_p)]),
    "surg_recipe_parse_partial": (c_int, [c_char_p, c_char_p, c_size_t, P(Sink), P(c_void_p)]),
    "surg_recipe_load_partial": (c_int, [c_char_p, P(Sink), P(c_void_p)]),
    "surg_recipe_free": (None, [c_void_p]),
    "surg_compile_for": (c_int, [c_void_p, c_void_p, P(CompileOpts), P(Sink), P(c_void_p)]),
    "surg_program_free": (None, [c_void_p]),
    "surg_program_output_count": (c_size_t, [c_void_p]),
    "surg_program_output": (P(TensorInfo), [c_void_p, c_size_t]),
    "surg_program_alias_count": (c_size_t, [c_void_p]),
    "surg_program_alias": (P(MetaEntry), [c_void_p, c_size_t]),
    "surg_program_check_target": (c_int, [c_void_p, c_void_p, P(Sink)]),
    "surg_plan_build": (c_int, [c_void_p, c_uint, P(c_void_p)]),
    "surg_plan_free": (None, [c_void_p]),
    "surg_plan_text": (c_void_p, [c_void_p]),
    "surg_plan_json": (c_void_p, [c_void_p]),
    "surg_run": (c_int, [c_void_p, c_char_p, P(RunOpts), P(Sink)]),
    "surg_parse_size": (c_int, [c_char_p, P(c_uint64)]),
}
for _name, (_res, _args) in _SIGNATURES.items():
    _fn = getattr(lib, _name)
    _fn.restype, _fn.argtypes = _res, _args

LIBRARY_VERSION = lib.surg_version().decode()
if LIBRARY_VERSION != __version__:
    raise ImportError(f"surg: the package is version {__version__} but the library it found "
                      f"({lib._name}) is {LIBRARY_VERSION}: set SURG_LIBRARY to a "
                      f"libsurg.so of version {__version__}")


def take_string(ptr):
    """A string the library allocated, as bytes, freed; None for NULL."""
    if not ptr:
        return None
    try:
        return ctypes.string_at(ptr)
    finally:
        _libc.free(ptr)
