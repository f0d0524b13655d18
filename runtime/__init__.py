"""nametool's runtime: generate names from a ``.onnx`` model with onnxruntime and numpy.

    >>> from nametool.runtime import NameModel
    >>> model = NameModel.load()                 # the bundled default model
    >>> model.generate(3, seed=0)                # doctest: +SKIP
    >>> model.next_char_distribution("abi")      # doctest: +SKIP

This package imports only the standard library, numpy, onnxruntime and click,
and each of those only when first needed: ``nametool-run --help`` and argument
errors answer without loading numpy or onnxruntime.
"""

from nametool.runtime.errors import DataError, ModelFileError, NametoolError, RequestError

_LAZY = {
    "NameModel": "nametool.runtime.model",
    "bundled_model_path": "nametool.runtime.model",
    "ModelMeta": "nametool.runtime.schema",
    "SCHEMA_VERSION": "nametool.runtime.schema",
}

__all__ = [
    "DataError",
    "ModelFileError",
    "ModelMeta",
    "NameModel",
    "NametoolError",
    "RequestError",
    "SCHEMA_VERSION",
    "__version__",
    "bundled_model_path",
]


def __getattr__(name: str):
    """Import the heavier parts on first use (PEP 562)."""
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("nametool")
        except PackageNotFoundError:  # a source tree that was never installed
            return "0+unknown"
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nametool.runtime' has no attribute {name!r}")
