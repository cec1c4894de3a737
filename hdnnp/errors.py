"""Exceptions that the command line turns into one clear message and a non-zero exit status."""

from __future__ import annotations


class HdnnpError(Exception):
    """A user-facing error: bad input, incompatible files, impossible options.

    The CLI prints ``Error: <message>`` and exits with status 2; no traceback.
    """


class InputFileError(HdnnpError):
    """Bad content in an input file, located by file name and line (or timestep)."""

    def __init__(self, path, message: str, line: int | None = None, where: str | None = None):
        self.path = str(path)
        self.line = line
        self.where = where
        loc = self.path
        if line is not None:
            loc += f", line {line}"
        if where:
            loc += f" ({where})"
        super().__init__(f"{loc}: {message}")
