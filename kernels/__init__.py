"""Triton kernels (installed as ``ssmts.kernels``); each has a torch reference in ``ssmts.ssm``."""
