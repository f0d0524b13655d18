"""Run a Python snippet with torch and onnx made unimportable: ``python block_imports.py CODE``.

The torch-free proof: if any runtime path imports either, the snippet fails.
"""

import importlib.abc
import sys

BLOCKED = ("torch", "onnx", "onnxscript")


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked)", name=fullname)
        return None


sys.meta_path.insert(0, Blocker())
code = sys.argv[1]
sys.argv = sys.argv[1:]
exec(compile(code, "<blocked>", "exec"))
