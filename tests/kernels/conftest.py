"""Kernel tests run the Triton interpreter when no CUDA GPU is present.

``TRITON_INTERPRET`` must be set before triton is first imported, so it is set here,
at collection time, before the test modules import ``ssmts.kernels``.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
