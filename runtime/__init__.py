"""nametool's runtime: generate names from a ``.onnx`` model with onnxruntime and numpy.

    >>> from nametool.runtime import NameModel
    >>> model = NameModel.load()                 # the bundled default model
    >>> model.generate(3, seed=0)                # doctest: +SKIP
    >>> model.next_char_distribution("abi")      # doctest: +SKIP

This package imports only the standard library, numpy, onnxruntime and click.
"""

from importlib.metadata import PackageNotFoundError, version

from nametool.runtime.errors import DataError, ModelFileError, NametoolError, RequestError
from nametool.runtime.model import NameModel, bundled_model_path
from nametool.runtime.schema import SCHEMA_VERSION, ModelMeta

try:
    __version__ = version("nametool")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

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
