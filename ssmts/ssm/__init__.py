"""Pure state-space math: no module state, float64-capable everywhere.

- :mod:`.hippo`      HiPPO matrices, NPLR/DPLR forms, S4D and S5 initialisations
- :mod:`.discretize` zero-order hold, (generalised) bilinear, Euler; dense and diagonal A
- :mod:`.conv`       convolution kernels (Vandermonde, Cauchy/DPLR) and FFT convolutions
- :mod:`.scan`       linear recurrences: sequential, parallel (log-depth), chunked
- :mod:`.selective`  Mamba's selective scan reference
- :mod:`.lti`        the control-theory view of a linear system
"""

from .conv import (cauchy, fft_conv, fft_conv_bidirectional, kernel_dplr, kernel_from_powers,
                   kernel_vandermonde)
from .discretize import discretize, discretize_bilinear, discretize_euler, discretize_zoh
from .hippo import (DPLR, NPLR, S5Init, dplr_init, dplr_to_dense, hippo_matrices, legs_basis, nplr,
                    s4d_init, s4d_real_init, s5_init, s5_project)
from .lti import LTISystem
from .scan import linear_scan, linear_scan_chunked, linear_scan_parallel, linear_scan_ref
from .selective import selective_scan_ref

__all__ = [
    "cauchy", "fft_conv", "fft_conv_bidirectional", "kernel_dplr", "kernel_from_powers",
    "kernel_vandermonde",
    "discretize", "discretize_bilinear", "discretize_euler", "discretize_zoh",
    "DPLR", "NPLR", "S5Init", "dplr_init", "dplr_to_dense", "hippo_matrices", "legs_basis", "nplr",
    "s4d_init", "s4d_real_init", "s5_init", "s5_project",
    "LTISystem",
    "linear_scan", "linear_scan_chunked", "linear_scan_parallel", "linear_scan_ref",
    "selective_scan_ref",
]
