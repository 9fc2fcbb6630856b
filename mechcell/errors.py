"""Typed errors a user can act on. Each names the file, column or value that was wrong.

Why a shared base: the CLI and the web door catch `MechcellError` and print its message (never a traceback),
while genuine bugs still surface as ordinary exceptions.
"""

from __future__ import annotations


class MechcellError(Exception):
    """Base class of every error mechcell raises on bad input or state."""


class InputError(MechcellError, ValueError):
    """Bad user input: a file, column or value that cannot be used as given."""


class MissingColumnError(InputError):
    """A required column is absent. Message: `column 'drug' not in data.h5ad obs (have: ...); pass --...`."""


class NotFoundError(MechcellError, LookupError):
    """A named thing (condition key, trace id, entity) does not exist in the store."""
