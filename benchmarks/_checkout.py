"""Make ``ssmts`` (with ``kernels/`` as ``ssmts.kernels``) importable from a plain checkout.

The GPU machine runs the benchmarks from a copy of the repository that is not
pip-installed; there the ``kernels/`` folder must be mapped into the ``ssmts``
namespace by hand, as pyproject.toml does for installs.
"""

from __future__ import annotations

import importlib.util
import os
import sys


def ensure_ssmts_kernels() -> None:
    """Import ``ssmts.kernels``; if that fails, map the checkout's ``kernels/`` onto it."""
    try:
        import ssmts.kernels  # noqa: F401
        return
    except ImportError:
        pass
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, root)
    import ssmts

    spec = importlib.util.spec_from_file_location(
        "ssmts.kernels", os.path.join(root, "kernels", "__init__.py"),
        submodule_search_locations=[os.path.join(root, "kernels")])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["ssmts.kernels"] = mod
    spec.loader.exec_module(mod)
    ssmts.kernels = mod
