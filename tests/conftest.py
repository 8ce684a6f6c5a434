"""Session-wide test setup.

``TRITON_INTERPRET`` must be set before triton is first imported, and some test
modules outside ``tests/kernels`` import libraries (Lightning) that import triton
at collection time; so it is set here, before any test module is imported, when no
CUDA GPU is present (``tests/kernels/conftest.py`` says why the kernels need it).
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
