"""Fused selective scan (Mamba's S6) in Triton, forward and backward (v2: sequential walk).

Same interface and semantics as :func:`ssmts.ssm.selective.selective_scan_ref`.
Hardware-aware in the Mamba sense: one thread owns one channel and keeps its ``N``
states (fp32) in registers; a program of ``BLOCK_D`` channels walks time
*sequentially*, one step after the other (no parallel scan: the dependent chain per
step is one FMA per state, so the exp2 per state-update is the cost). ``u``, ``delta``,
``z`` (and ``y``) move as ``(BLOCK_D, TL)`` tiles, ``TL`` consecutive steps per thread
in one vector access, and step ``t`` is a compile-time column of the tile (no data
movement). ``B``/``C`` are read from a small time-major fp32 copy ``(batch, G, L, 2, NP)``
made by torch, so one step's ``B_t, C_t`` is one contiguous 2*NP row that every
thread of the program reads (a broadcast). No ``(batch, D, L, N)`` tensor exists.

The forward saves the state at the start of every chunk of ``CHUNK`` steps,
``(batch, D, n_chunks, N)`` fp32. The backward walks the chunks in reverse: it
recomputes the chunk's states from its carry, parks them in a per-program scratch
``(CHUNK, BLOCK_D, NP)`` fp32 (reused for every chunk, so it stays in L1/L2), then walks
the chunk backwards with the adjoint ``h_t = C_t gy_t + exp(dt_{t+1} A) h_{t+1}`` in
registers.

Determinism: ``deterministic=True`` (or env ``SSMTS_DETERMINISTIC=1``) fixes the
launch configuration and reduces the gradients shared across channels (dB, dC,
dgaps) through per-program partial rows that torch adds up in a fixed order; the
default fast mode adds them with fp32 atomics. dA, dD and ddelta_bias always go
through a small (batch, D, N) partial buffer.

B/C of the fixed (D, N) form, complex A and float64 inputs are computed by the
torch reference (documented fallback); everything else runs here.
"""

from __future__ import annotations

import os

import torch
import triton

from ssmts.ssm._validate import gpu_value_checks, result_finite
from ssmts.ssm.selective import check_selective_scan_args, selective_scan_ref

from ._s6v2_jit import _s6_bwd_kernel, _s6_fwd_kernel

__all__ = ["selective_scan", "selective_scan_fn"]

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
#: Steps per saved carry (the backward's chunk); a multiple of TL.
CHUNK = 16 if _INTERPRET else int(os.environ.get("SSMTS_S6_CHUNK", "16"))
#: Steps per tile of u / delta / z / y (one vector access per thread).
TL = 8


def deterministic_default() -> bool:
    """The default of ``deterministic``: env ``SSMTS_DETERMINISTIC`` set to 1/true/yes."""
    return os.environ.get("SSMTS_DETERMINISTIC", "0").lower() in ("1", "true", "yes")


def _pick_block_d(d_per_group: int, target: int) -> int:
    bd = 1
    while bd * 2 <= target and d_per_group % (bd * 2) == 0:
        bd *= 2
    return bd


def _launch_bd(batch: int, dim: int, d_per_group: int) -> tuple[int, int]:
    """(BLOCK_D, num_warps): one thread a channel; fewer channels a program when the
    batch is small, so that more programs (warps) share the SMs."""
    if _INTERPRET:
        return _pick_block_d(d_per_group, 2), 1
    bd_env = int(os.environ.get("SSMTS_S6_BD", "0"))  # override for sweeps
    if bd_env:
        bd = _pick_block_d(d_per_group, bd_env)
    else:
        target = 32
        while target > 8 and batch * dim // target < 4 * 132:
            target //= 2
        bd = _pick_block_d(d_per_group, target)
    return bd, max(1, bd // 32)


def _n_sub(batch: int, dim: int, bd: int, d_per_group: int, min_programs: int = 256) -> int:
    """Channel blocks per program in deterministic mode: few programs, small partial buffers."""
    nb = d_per_group // bd
    best = 1
    for k in range(1, nb + 1):
        if nb % k == 0 and batch * (dim // (bd * k)) >= min_programs:
            best = k
    return best


def _bc_time_major(B4: torch.Tensor, C4: torch.Tensor, l_pad: int, np_: int) -> torch.Tensor:
    """(b, G, N, L) B and C -> one fp32 (b, G, l_pad, 2, NP) tensor, zero padded."""
    batch, groups, nstate, length = B4.shape
    bc = torch.zeros(batch, groups, l_pad, 2, np_, device=B4.device, dtype=torch.float32)
    bc[:, :, :length, 0, :nstate] = B4.transpose(-1, -2)  # (b, G, L, N)
    bc[:, :, :length, 1, :nstate] = C4.transpose(-1, -2)  # (b, G, L, N)
    return bc


def _s6_fwd(u, delta, A, bc, Dsk, z, bias, gaps, groups, nstate, softplus, need_carry,
            need_last):
    """Launcher: u, delta, z contiguous (batch, D, L); bc from ``_bc_time_major``."""
    batch, dim, length = u.shape
    n_chunks, l_pad, np_ = triton.cdiv(length, CHUNK), bc.shape[2], bc.shape[4]
    out = torch.empty_like(u)
    carry = torch.empty(batch, dim, n_chunks, nstate, device=u.device, dtype=torch.float32) \
        if need_carry else out
    last = torch.empty(batch, dim, nstate, device=u.device, dtype=torch.float32) \
        if need_last else out
    bd, nw = _launch_bd(batch, dim, dim // groups)
    dummy = u
    _s6_fwd_kernel[(batch, dim // bd)](
        u, delta, A, bc, dummy if Dsk is None else Dsk, dummy if z is None else z,
        dummy if bias is None else bias, dummy if gaps is None else gaps, out, carry, last,
        dim, length, l_pad, nstate, dim // groups, groups, n_chunks,
        NP=np_, BLOCK_D=bd, TL=TL, CHUNK_L=CHUNK, HAS_D=Dsk is not None, HAS_Z=z is not None,
        HAS_BIAS=bias is not None, SOFTPLUS=softplus, HAS_GAPS=gaps is not None,
        STORE_CARRY=need_carry, STORE_LAST=need_last, num_warps=nw)
    return out, (carry if need_carry else None), (last if need_last else None)


def _s6_bwd(gout, glast, u, dt, A, bc, Dsk, z, bias, gaps, carry, groups, nstate, softplus,
            deterministic, gaps_grad):
    """Launcher of the backward; returns the gradients (dB, dC as (b, G, N, L) fp32)."""
    batch, dim, length = u.shape
    dpg = dim // groups
    n_chunks, l_pad, np_ = carry.shape[2], bc.shape[2], bc.shape[4]
    dev, f32 = u.device, torch.float32
    du, ddt = torch.empty_like(u), torch.empty_like(dt)
    dz = torch.empty_like(z) if z is not None else du
    dA_p = torch.empty(batch, dim, nstate, device=dev, dtype=f32)
    dD_p = torch.empty(batch, dim, device=dev, dtype=f32)
    db_p = torch.empty(batch, dim, device=dev, dtype=f32)
    bd, nw = _launch_bd(batch, dim, dpg)
    n_sub = _n_sub(batch, dim, bd, dpg, 4 if _INTERPRET else 512) if deterministic else 1
    progs = dim // (bd * n_sub)
    rows = progs * batch if deterministic else batch * groups
    dbc = torch.zeros(rows, l_pad, 2, np_, device=dev, dtype=f32)
    dg = torch.zeros(rows, l_pad, device=dev, dtype=f32) if gaps_grad else dbc
    xs = torch.empty(batch * progs * CHUNK * bd * np_, device=dev, dtype=f32)
    dummy = u
    _s6_bwd_kernel[(batch, progs)](
        u, dt, A, bc, dummy if Dsk is None else Dsk, dummy if z is None else z,
        dummy if bias is None else bias, dummy if gaps is None else gaps, carry, gout,
        dummy if glast is None else glast, xs, du, ddt, dz, dA_p, dD_p, db_p, dbc, dg,
        batch, dim, length, l_pad, nstate, dpg, groups, n_chunks, n_sub,
        NP=np_, BLOCK_D=bd, TL=TL, CHUNK_L=CHUNK, HAS_D=Dsk is not None, HAS_Z=z is not None,
        HAS_BIAS=bias is not None, SOFTPLUS=softplus, HAS_GAPS=gaps is not None,
        GAPS_GRAD=gaps_grad, HAS_GLAST=glast is not None, DETERMINISTIC=deterministic,
        num_warps=nw)
    dbc = dbc[:, :length, :, :nstate]  # (rows, L, 2, N)
    if deterministic:
        ppg = rows // (batch * groups)  # programs per group
        dbc = dbc.reshape(groups, ppg, batch, length, 2, nstate).sum(1).transpose(0, 1)
        dgaps = dg[:, :length].reshape(groups * ppg, batch, length).sum(0) if gaps_grad else None
    else:
        dbc = dbc.reshape(batch, groups, length, 2, nstate)  # (b, G, L, 2, N)
        dgaps = dg[:, :length].reshape(batch, groups, length).sum(1) if gaps_grad else None
    dB = dbc[:, :, :, 0].transpose(-1, -2)  # (b, G, N, L)
    dC = dbc[:, :, :, 1].transpose(-1, -2)  # (b, G, N, L)
    return (du, ddt, dA_p.sum(0).to(A.dtype), dB, dC,
            None if Dsk is None else dD_p.sum(0).to(Dsk.dtype), None if z is None else dz,
            None if bias is None else db_p.sum(0).to(bias.dtype),
            None if not gaps_grad else dgaps.to(gaps.dtype))


def needs_reference(u, A, B, C) -> bool:
    """Inputs the kernels leave to ``selective_scan_ref``: fixed (D, N) B/C, complex,
    float64, or B and C of different layouts."""
    return (B.ndim == 2 or C.ndim == 2 or A.is_complex() or B.is_complex() or C.is_complex()
            or u.dtype == torch.float64 or B.ndim != C.ndim
            or (B.ndim == 4 and B.shape[1] != C.shape[1]))


def _as_bc4(t: torch.Tensor) -> torch.Tensor:
    """(batch, N, L) -> (batch, 1, N, L); (batch, G, N, L) stays."""
    return t.unsqueeze(1) if t.ndim == 3 else t


class SelectiveScanFn(torch.autograd.Function):
    """Autograd wrapper: forward kernel saves chunk carries, backward kernel recomputes."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, Dsk, z, bias, softplus, return_last, gaps, deterministic):
        u_c, dt_c = u.contiguous(), delta.contiguous()
        z_c = None if z is None else z.contiguous()
        B4, C4 = _as_bc4(B), _as_bc4(C)
        groups, nstate, length = B4.shape[1], B4.shape[2], B4.shape[3]
        np_ = triton.next_power_of_2(nstate)
        bc = _bc_time_major(B4, C4, triton.cdiv(length, CHUNK) * CHUNK, np_)
        A_c = A.contiguous()
        gaps_c = None if gaps is None else gaps.contiguous()
        need_grad = any(ctx.needs_input_grad)
        out, carry, last = _s6_fwd(u_c, dt_c, A_c, bc, Dsk, z_c, bias, gaps_c, groups, nstate,
                                   softplus, need_grad, return_last)
        ctx.save_for_backward(u_c, dt_c, A_c, bc, Dsk, z_c, bias, gaps_c, carry)
        ctx.flags = (softplus, deterministic, B.ndim, groups, nstate, B.dtype, C.dtype)
        ctx.set_materialize_grads(False)
        return (out, last) if return_last else out

    @staticmethod
    def backward(ctx, gout, glast=None):
        u, dt, A, bc, Dsk, z, bias, gaps, carry = ctx.saved_tensors
        softplus, deterministic, bc_ndim, groups, nstate, b_dtype, c_dtype = ctx.flags
        need_gaps = gaps is not None and ctx.needs_input_grad[10]
        if gout is None:
            gout = torch.zeros_like(u)
        grads = _s6_bwd(gout.contiguous(), None if glast is None else glast.contiguous(),
                        u, dt, A, bc, Dsk, z, bias, gaps, carry, groups, nstate, softplus,
                        deterministic, need_gaps)
        du, ddt, dA, dB, dC, dD, dz, dbias, dgaps = grads
        if bc_ndim == 3:
            dB, dC = dB[:, 0], dC[:, 0]
        return (du, ddt, dA, dB.to(b_dtype), dC.to(c_dtype), dD, dz, dbias, None, None, dgaps,
                None)


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, gaps=None, deterministic: bool | None = None):
    """Fused selective scan (Triton); same signature and result as ``selective_scan_ref``.

    Parameters
    ----------
    u, delta : tensor, shape (batch, D, L), fp32 / bf16 / fp16
    A : real tensor, shape (D, N)
    B, C : tensor, shape (batch, N, L) or (batch, G, N, L); the fixed (D, N) form
        falls back to the torch reference.
    D, delta_bias : tensor, shape (D,), optional
    z : tensor, shape (batch, D, L), optional
    delta_softplus, return_last_state : bool
    gaps : tensor, shape (batch, L), optional, positive
    deterministic : bool, optional
        Fixed launch config and no atomics; default from env ``SSMTS_DETERMINISTIC``.

    Returns
    -------
    out : tensor, shape (batch, D, L), dtype of ``u``
    last_state : fp32 tensor, shape (batch, D, N), only if ``return_last_state``

    Notes
    -----
    Types and shapes are always checked. Values (NaN/inf, gaps > 0) are checked on CPU
    tensors; on CUDA only with ``SSMTS_CHECK_GPU_VALUES=1`` (a reduction and a host sync per
    call), otherwise non-finite inputs give non-finite outputs.
    """
    return run_checked(SelectiveScanFn.apply, u, delta, A, B, C, D, z, delta_bias,
                       delta_softplus, return_last_state, gaps, deterministic)


def run_checked(apply, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
                gaps, deterministic):
    """The public path shared by the v2 and v3 kernels: check, fall back to the reference
    where the kernel does not apply, run ``apply`` (an autograd Function's ``apply``), and
    on CUDA check values through the result when ``SSMTS_CHECK_GPU_VALUES=1``."""
    args = (u, delta, A, B, C, D, z, delta_bias, gaps)
    check_selective_scan_args(*args, values=not u.is_cuda)  # CUDA: see gpu_value_checks
    if needs_reference(u, A, B, C):
        return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                  return_last_state, gaps)
    if deterministic is None:
        deterministic = deterministic_default()
    res = apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus),
                bool(return_last_state), gaps, bool(deterministic))
    if u.is_cuda and gpu_value_checks() and not result_finite(
            res[0] if return_last_state else res, gaps):
        check_selective_scan_args(*args)  # names a non-finite input or bad gap, if any
    return res


selective_scan_fn = selective_scan
