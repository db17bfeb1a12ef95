"""_diag.py: diagnostics as Python sees them. The library reports each one
through the public API's callback (surg_sink); a Collector keeps them, each
with the text `surg` prints for it (surg_diag_text), and a failed call
raises them together as one SurgError."""

import ctypes
import os
import warnings
from dataclasses import dataclass
from typing import Optional, Tuple

from . import _lib


@dataclass(frozen=True)
class Diagnostic:
    """One diagnostic: where (file, and line/column from 1 when it is in a
    text file, else 0), what (severity, a stable code, the message and its
    notes), and `text`, exactly what the `surg` command prints for it."""
    severity: str  # "error", "warning" or "note"
    code: str
    file: str
    line: int
    column: int
    end_line: int
    end_column: int
    message: str
    notes: Tuple[str, ...]
    source_line: Optional[str]
    text: str

    def __str__(self):
        return self.text.rstrip("\n")


class SurgError(Exception):
    """A recipe, checkpoint or call surg refused. `diagnostics` is every
    diagnostic the call reported, in order; str() is what `surg` prints to
    standard error for them (without the last newline). `status` is the
    library's (1 invalid, 2 I/O, 3 out of memory, 4 usage) and `exit_code`
    what the command would exit with."""

    def __init__(self, status, diagnostics):
        self.status = status
        self.exit_code = _lib.lib.surg_exit_code(status)
        self.diagnostics = list(diagnostics)
        super().__init__("".join(d.text for d in self.diagnostics).rstrip("\n")
                         or f"surg: failed (status {status})")

    @property
    def errors(self):
        return [d for d in self.diagnostics if d.severity == "error"]


class SurgWarning(UserWarning):
    """A warning or note of a call that succeeded; `diagnostic` is it."""

    def __init__(self, diagnostic):
        super().__init__(str(diagnostic))
        self.diagnostic = diagnostic


def _text(b):
    return b.decode("utf-8", errors="replace") if b is not None else None


class Collector:
    """A surg_sink that keeps every diagnostic. `rename` maps a file the
    package wrote for the call (a schema object's temporary .json) to the
    name the user knows it by."""

    def __init__(self):
        self.diagnostics = []
        self.rename = {}
        self._fn = _lib.DIAG_FN(self._report)  # kept alive while the sink is
        self.sink = _lib.Sink(self._fn, None, 0, 0)

    def _report(self, ptr, _user):
        try:
            d = ptr.contents
            shown = _lib.Diag.from_buffer_copy(d)
            label = self.rename.get(d.file)
            if label is not None:
                shown.file = label
            text = _lib.take_string(_lib.lib.surg_diag_text(ctypes.byref(shown), 0))
            self.diagnostics.append(Diagnostic(
                severity=_lib.SEVERITIES[d.severity] if 0 <= d.severity < 3 else "error",
                code=_text(d.code) or "",
                file=os.fsdecode(shown.file) if shown.file is not None else "surg",
                line=d.line, column=d.col, end_line=d.end_line, end_column=d.end_col,
                message=_text(d.message) or "",
                notes=tuple(_text(d.notes[i]) for i in range(d.n_notes)),
                source_line=_text(d.source_line) if d.line else None,
                text=_text(text) if text is not None else "surg: error: out of memory\n"))
        except BaseException as e:  # never unwind through C
            self.diagnostics.append(Diagnostic("error", "python", "surg", 0, 0, 0, 0,
                                               f"reporting a diagnostic failed: {e!r}", (),
                                               None, f"surg: error: {e!r}\n"))

    def ref(self):
        return ctypes.byref(self.sink)

    def fail(self, status):
        raise SurgError(status, self.diagnostics)

    def warn(self, stacklevel=3):
        """The diagnostics of a call that succeeded, as Python warnings."""
        for d in self.diagnostics:
            warnings.warn(SurgWarning(d), stacklevel=stacklevel)
