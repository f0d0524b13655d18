"""The errors nametool raises for things a user can fix.

Library code raises these; the command-line interfaces turn them into a
one-line message and exit status 1. Anything else is a bug and keeps its traceback.
"""


class NametoolError(Exception):
    """Base class: a problem with what the user gave us, stated in one line."""


class DataError(NametoolError):
    """A names file that cannot be read or used as training data."""


class ModelFileError(NametoolError):
    """A model or checkpoint file that is missing, corrupt or not ours."""


class RequestError(NametoolError):
    """Options that cannot be satisfied together (a prefix outside the vocabulary, ...)."""
