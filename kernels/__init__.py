"""Triton kernels and the compiled CPU scan (installed as ``ssmts.kernels``); each has a torch
reference in ``ssmts.ssm`` with the same signature."""
