"""surg: checkpoint surgery from Python, over libsurg.so (the public API of
include/surg/surg.h, through ctypes). docs/python.md walks through it.

    import surg
    surg.check("port.surg", "model.safetensors", target=surg.schema_of(new_params))
    surg.run("port.surg", "model.safetensors", "ported.safetensors")
"""

__version__ = "0.1.0"

from ._diag import Diagnostic, SurgError, SurgWarning  # noqa: E402
from ._schema import Schema, Tensor  # noqa: E402
from ._api import Plan, check, plan, run, schema, schema_of  # noqa: E402
from ._lib import LIBRARY_VERSION, lib as _library  # noqa: E402

library_path = _library._name

__all__ = ["check", "plan", "run", "schema", "schema_of", "Schema", "Tensor", "Plan",
           "Diagnostic", "SurgError", "SurgWarning", "library_path", "LIBRARY_VERSION"]
