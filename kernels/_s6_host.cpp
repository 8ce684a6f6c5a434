// Host path of the v3 selective scan in C++: an autograd Function whose forward and
// backward allocate, launch the Triton-compiled kernels and finish the gradients without
// Python. At B=1 the kernels take ~0.05 ms (forward) and ~0.2 ms (backward), and the
// Python host path (ctx unpacking, allocations, Triton's launcher, all on the autograd
// device thread) took longer than that: see benchmarks/NOTES_s6.md, "Host path".
//
// Python compiles the kernels (Triton) and hands over a launch plan per kernel:
//   [function handle, num_warps, shared bytes, grid x, grid y, n_ints, (code, value) * n_ints]
// code 4: the value is passed as int32, 8: as int64 (Triton's i32 / i64 parameters; ints
// Triton made constants are not in the plan). Every pointer parameter comes first, in the
// kernel's order; Triton 3.x kernels end with two scratch pointers (null: the plans are
// only built for kernels that need no scratch).
#include <torch/extension.h>
#include <ATen/cuda/CUDAContext.h>
#include <cuda.h>
#include <dlfcn.h>

#include <cctype>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace {

using LaunchFn = CUresult (*)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned,
                              unsigned, unsigned, CUstream, void**, void**);

LaunchFn launcher() {
  static LaunchFn fn = [] {
    void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);  // loaded by torch already
    if (lib == nullptr) lib = dlopen("libcuda.so.1", RTLD_NOW);
    TORCH_CHECK(lib != nullptr, "ssmts host path: cannot open libcuda.so.1");
    auto f = reinterpret_cast<LaunchFn>(dlsym(lib, "cuLaunchKernel"));
    TORCH_CHECK(f != nullptr, "ssmts host path: cuLaunchKernel not found in libcuda.so.1");
    return f;
  }();
  return fn;
}

void launch(const std::vector<int64_t>& plan, std::initializer_list<const void*> pointers) {
  const int64_t n_ints = plan[5];
  const size_t n_ptr = pointers.size();
  CUdeviceptr ptrs[32] = {0};  // the kernel's pointers, then the two scratch pointers (null)
  int64_t i64[16];
  int32_t i32[16];
  void* params[64];
  TORCH_CHECK(n_ptr + 2 <= 32 && n_ints <= 16, "ssmts host path: too many kernel parameters");
  size_t n = 0;
  for (const void* p : pointers) {
    ptrs[n] = reinterpret_cast<CUdeviceptr>(p);
    params[n] = &ptrs[n];
    ++n;
  }
  for (int64_t k = 0; k < n_ints; ++k) {
    const int64_t code = plan[6 + 2 * k], value = plan[7 + 2 * k];
    if (code == 4) {
      i32[k] = static_cast<int32_t>(value);
      params[n++] = &i32[k];
    } else {
      i64[k] = value;
      params[n++] = &i64[k];
    }
  }
  params[n++] = &ptrs[n_ptr];
  params[n++] = &ptrs[n_ptr + 1];
  const CUstream stream = at::cuda::getCurrentCUDAStream().stream();
  const CUresult err = launcher()(reinterpret_cast<CUfunction>(plan[0]),
                                  static_cast<unsigned>(plan[3]), static_cast<unsigned>(plan[4]), 1,
                                  static_cast<unsigned>(32 * plan[1]), 1, 1,
                                  static_cast<unsigned>(plan[2]), stream, params, nullptr);
  TORCH_CHECK(err == CUDA_SUCCESS, "ssmts host path: cuLaunchKernel failed with CUresult ", err);
}

// 16-byte aligned and contiguous (what the plans were compiled for); a copy otherwise.
// is_contiguous() and data_ptr() are inline reads: no dispatcher call in the common case.
at::Tensor aligned(const at::Tensor& t) {
  if (t.is_contiguous() && reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0) return t;
  at::Tensor c = t.contiguous();
  if (reinterpret_cast<uintptr_t>(c.data_ptr()) % 16 != 0) c = c.clone();
  return c;
}

int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }
int64_t round4(int64_t n) { return round_up(n, 4); }  // floats to a 16-byte multiple

// rows (batch, n) of a buffer at float offset `off`, summed over the batch, as `dtype`
// (at batch 1 a view of the buffer: no reduction, and no select on top of the view)
at::Tensor batch_sum(const at::Tensor& buf, int64_t off, int64_t batch, at::IntArrayRef shape,
                     at::ScalarType dtype) {
  int64_t n = 1;
  for (auto s : shape) n *= s;
  std::vector<int64_t> size{batch}, stride{n};
  int64_t st = n;
  for (auto s : shape) {
    size.push_back(s);
    stride.push_back(st /= s);
  }
  at::Tensor s = batch == 1
      ? buf.as_strided(at::IntArrayRef(size).slice(1), at::IntArrayRef(stride).slice(1), off)
      : buf.as_strided(size, stride, off).sum(0);
  return s.scalar_type() == dtype ? s : s.to(dtype);
}

// `count` views shaped like `like` (contiguous) into one fresh buffer, one allocation for
// several per-step gradients of one dtype; each starts on a 16-byte boundary, as the
// kernels were compiled for
std::vector<at::Tensor> carve(const at::Tensor& like, at::ScalarType dtype, int64_t count) {
  const int64_t n = like.numel();
  const int64_t step = round_up(n, 16 / static_cast<int64_t>(c10::elementSize(dtype)));
  at::Tensor flat = at::empty({count * step}, like.options().dtype(dtype));
  std::vector<at::Tensor> out;
  for (int64_t k = 0; k < count; ++k)
    out.push_back(flat.as_strided(like.sizes(), like.strides(), k * step));
  return out;
}

struct S6Fn : public torch::autograd::Function<S6Fn> {
  // shape: [batch, dim, length, nstate, groups, n_save, copies of the dB/dC rows]
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& u,
                            const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                            const at::Tensor& C, const c10::optional<at::Tensor>& Dsk,
                            const c10::optional<at::Tensor>& z,
                            const c10::optional<at::Tensor>& bias, std::vector<int64_t> fwd_plan,
                            std::vector<int64_t> bwd_plan, std::vector<int64_t> shape) {
    // B, C of shape (batch, N, L) are (batch, 1, N, L) to the kernel: same memory
    const at::Tensor u_c = aligned(u), dt_c = aligned(delta), A_c = aligned(A);
    const at::Tensor B_c = aligned(B), C_c = aligned(C);
    // optional inputs: an undefined tensor cannot be a variable input of a C++ Function
    const at::Tensor D_c = Dsk.has_value() ? aligned(*Dsk) : at::Tensor();
    const at::Tensor z_c = z.has_value() ? aligned(*z) : at::Tensor();
    const at::Tensor b_c = bias.has_value() ? aligned(*bias) : at::Tensor();
    at::Tensor out = at::empty(u_c.sizes(), u_c.options());
    at::Tensor carry = at::empty({shape[0], shape[1], shape[5] + 1, shape[3]},
                                 u_c.options().dtype(at::kFloat));
    const void* up = u_c.data_ptr();
    launch(fwd_plan, {up, dt_c.data_ptr(), A_c.data_ptr(), B_c.data_ptr(), C_c.data_ptr(),
                      D_c.defined() ? D_c.data_ptr() : up, z_c.defined() ? z_c.data_ptr() : up,
                      b_c.defined() ? b_c.data_ptr() : up, up, out.data_ptr(), carry.data_ptr()});
    ctx->save_for_backward({u_c, dt_c, A_c, B_c, C_c, D_c, z_c, b_c, carry});
    ctx->saved_data["bwd_plan"] = std::move(bwd_plan);
    ctx->saved_data["shape"] = std::move(shape);
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &u = saved[0], &dt = saved[1], &A = saved[2], &B = saved[3], &C = saved[4],
                     &Dsk = saved[5], &z = saved[6], &bias = saved[7], &carry = saved[8];
    const auto plan = ctx->saved_data["bwd_plan"].toIntVector();
    const auto shape = ctx->saved_data["shape"].toIntVector();
    const int64_t batch = shape[0], dim = shape[1], length = shape[2], nstate = shape[3];
    const int64_t groups = shape[4], rows = batch * groups, ncopy = shape[6];
    at::Tensor gout = grads[0].defined() ? grads[0] : at::zeros_like(u);
    if (gout.scalar_type() != u.scalar_type()) gout = gout.to(u.scalar_type());
    gout = aligned(gout);
    // du, ddelta (and dz): one allocation when they share a dtype (u, delta, z are
    // contiguous with one shape here)
    at::Tensor du, ddt, dz;
    const bool same = dt.scalar_type() == u.scalar_type() &&
                      (!z.defined() || z.scalar_type() == u.scalar_type());
    if (same) {
      auto parts = carve(u, u.scalar_type(), z.defined() ? 3 : 2);
      du = parts[0], ddt = parts[1], dz = z.defined() ? parts[2] : du;
    } else {
      du = at::empty(u.sizes(), u.options()), ddt = at::empty(dt.sizes(), dt.options());
      dz = z.defined() ? at::empty(z.sizes(), z.options()) : du;
    }
    // one buffer: dD and dbias partials (b, D) each, written whole by the kernel; then the
    // zero-initialised dA partials (b, D, N), kc (2, b, D, N), dB and dC rows (ncopy, rows,
    // N, L) each, each part starting on a 16-byte boundary
    const int64_t n_row = rows * nstate * length;  // one copy of the dB (or dC) rows
    const int64_t n_dd = round4(batch * dim), n_da = round4(batch * dim * nstate);
    const int64_t n_kc = round4(2 * batch * dim * nstate), n_bc = round4(ncopy * n_row);
    at::Tensor buf = at::empty({2 * n_dd + n_da + n_kc + 2 * n_bc}, u.options().dtype(at::kFloat));
    float* base = buf.data_ptr<float>();
    const int64_t o_da = 2 * n_dd, o_kc = o_da + n_da, o_db = o_kc + n_kc, o_dc = o_db + n_bc;
    C10_CUDA_CHECK(cudaMemsetAsync(base + o_da, 0, (n_da + n_kc + 2 * n_bc) * sizeof(float),
                                   at::cuda::getCurrentCUDAStream().stream()));
    const void* up = u.data_ptr();
    launch(plan, {up, dt.data_ptr(), A.data_ptr(), B.data_ptr(), C.data_ptr(),
                  Dsk.defined() ? Dsk.data_ptr() : up, z.defined() ? z.data_ptr() : up,
                  bias.defined() ? bias.data_ptr() : up, up, carry.data_ptr(), gout.data_ptr(),
                  base + o_kc, du.data_ptr(), ddt.data_ptr(), dz.data_ptr(), base + o_da, base,
                  base + n_dd, base + o_db, base + o_dc, base + o_db});
    // dB, dC: rows (batch, G, N, L) summed over nothing (one row per batch and group), in
    // the shape B and C came in ((batch, N, L) is (batch, 1, N, L))
    // (copies first added into copy 0 in place, dB and dC together: log2(ncopy) adds)
    if (ncopy > 1) {
      at::Tensor cp = buf.as_strided({2, ncopy, n_row}, {n_bc, n_row, 1}, o_db);
      for (int64_t h = ncopy / 2; h >= 1; h /= 2) cp.narrow(1, 0, h).add_(cp.narrow(1, h, h));
    }
    at::Tensor dB, dC;
    if (B.scalar_type() != at::kFloat && B.scalar_type() == C.scalar_type()) {
      // both rows (copy 0 of each) cast by one op
      at::Tensor both = buf.as_strided({2, n_row}, {n_bc, 1}, o_db).to(B.scalar_type());
      dB = both.as_strided(B.sizes(), B.strides(), 0);
      dC = both.as_strided(C.sizes(), C.strides(), n_row);
    } else {
      dB = buf.as_strided(B.sizes(), B.strides(), o_db);
      dC = buf.as_strided(C.sizes(), C.strides(), o_dc);
      if (dB.scalar_type() != B.scalar_type()) dB = dB.to(B.scalar_type());
      if (dC.scalar_type() != C.scalar_type()) dC = dC.to(C.scalar_type());
    }
    return {du,
            ddt,
            batch_sum(buf, o_da, batch, {dim, nstate}, A.scalar_type()),
            dB,
            dC,
            Dsk.defined() ? batch_sum(buf, 0, batch, {dim}, Dsk.scalar_type()) : at::Tensor(),
            z.defined() ? dz : at::Tensor(),
            bias.defined() ? batch_sum(buf, n_dd, batch, {dim}, bias.scalar_type()) : at::Tensor(),
            at::Tensor(),
            at::Tensor(),
            at::Tensor()};
  }
};

at::Tensor selective_scan(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                          const at::Tensor& B, const at::Tensor& C,
                          const c10::optional<at::Tensor>& Dsk, const c10::optional<at::Tensor>& z,
                          const c10::optional<at::Tensor>& bias, std::vector<int64_t> fwd_plan,
                          std::vector<int64_t> bwd_plan, std::vector<int64_t> shape) {
  return S6Fn::apply(u, delta, A, B, C, Dsk, z, bias, std::move(fwd_plan), std::move(bwd_plan),
                     std::move(shape));
}

// ---------------------------------------------------------------- plans by call signature
// Python registers a plan once both kernels are compiled for a call signature (shapes,
// dtypes, optional inputs, softplus, device); try_apply finds it without entering Python.
struct Plan {
  std::vector<int64_t> fwd, bwd, shape;
};
std::map<std::vector<int64_t>, Plan>& plans() {
  static std::map<std::vector<int64_t>, Plan> p;
  return p;
}

int64_t code(const c10::optional<at::Tensor>& t) {
  return t.has_value() ? static_cast<int64_t>(t->scalar_type()) : -1;
}

// the signature of a call, or empty if the fast path does not apply (then Python decides,
// and raises the errors for bad input)
std::vector<int64_t> signature(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                               const at::Tensor& B, const at::Tensor& C,
                               const c10::optional<at::Tensor>& Dsk,
                               const c10::optional<at::Tensor>& z,
                               const c10::optional<at::Tensor>& bias, bool softplus) {
  if (!u.is_cuda() || u.dim() != 3 || !delta.sizes().equals(u.sizes()) || A.dim() != 2 ||
      A.size(0) != u.size(1) || B.dim() < 3 || B.dim() > 4 || !B.sizes().equals(C.sizes()))
    return {};
  const int64_t batch = u.size(0), dim = u.size(1), length = u.size(2), nstate = A.size(1);
  const int64_t groups = B.dim() == 4 ? B.size(1) : 1;
  if (B.size(0) != batch || B.size(-2) != nstate || B.size(-1) != length || groups < 1 ||
      dim % groups != 0)
    return {};
  if ((Dsk.has_value() && !Dsk->sizes().equals({dim})) ||
      (bias.has_value() && !bias->sizes().equals({dim})) ||
      (z.has_value() && !z->sizes().equals(u.sizes())))
    return {};
  if (A.is_complex() || B.is_complex() || C.is_complex() || u.scalar_type() == at::kDouble)
    return {};
  const auto dev = u.device();
  for (const at::Tensor* t : {&delta, &A, &B, &C})
    if (t->device() != dev) return {};
  for (const auto* t : {&Dsk, &z, &bias})
    if (t->has_value() && (*t)->device() != dev) return {};
  return {batch, dim, length, nstate, groups, B.dim(), static_cast<int64_t>(u.scalar_type()),
          static_cast<int64_t>(delta.scalar_type()), static_cast<int64_t>(A.scalar_type()),
          static_cast<int64_t>(B.scalar_type()), static_cast<int64_t>(C.scalar_type()),
          code(Dsk), code(z), code(bias), softplus ? 1 : 0, dev.index()};
}

bool env_is(const char* name, std::initializer_list<const char*> values) {
  const char* v = std::getenv(name);
  if (v == nullptr) return false;
  std::string low(v);
  for (auto& ch : low) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  for (const char* x : values)
    if (low == x) return true;
  return false;
}

void register_plan(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                   const at::Tensor& B, const at::Tensor& C, const c10::optional<at::Tensor>& Dsk,
                   const c10::optional<at::Tensor>& z, const c10::optional<at::Tensor>& bias,
                   bool softplus, std::vector<int64_t> fwd_plan, std::vector<int64_t> bwd_plan,
                   std::vector<int64_t> shape) {
  auto key = signature(u, delta, A, B, C, Dsk, z, bias, softplus);
  if (!key.empty())
    plans()[std::move(key)] = Plan{std::move(fwd_plan), std::move(bwd_plan), std::move(shape)};
}

// The whole forward (and, through autograd, backward) without Python, or None: no gradient
// asked for, a signature with no plan, or an env setting the Python path handles
// (SSMTS_HOST_EXT=0, SSMTS_DETERMINISTIC, SSMTS_CHECK_GPU_VALUES, SSMTS_FAST_LAUNCH=0).
c10::optional<at::Tensor> try_apply(const at::Tensor& u, const at::Tensor& delta,
                                    const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
                                    const c10::optional<at::Tensor>& Dsk,
                                    const c10::optional<at::Tensor>& z,
                                    const c10::optional<at::Tensor>& bias, bool softplus) {
  if (plans().empty() || !at::GradMode::is_enabled()) return c10::nullopt;
  bool grad = u.requires_grad() || delta.requires_grad() || A.requires_grad() ||
              B.requires_grad() || C.requires_grad();
  for (const auto* t : {&Dsk, &z, &bias}) grad = grad || (t->has_value() && (*t)->requires_grad());
  if (!grad) return c10::nullopt;
  // as the Python path reads them (kernels/_host.py, _launch.py, selective_scan.py)
  if (env_is("SSMTS_HOST_EXT", {"0"}) || env_is("SSMTS_FAST_LAUNCH", {"0"}) ||
      env_is("SSMTS_DETERMINISTIC", {"1", "true", "yes"}) ||
      env_is("SSMTS_CHECK_GPU_VALUES", {"1", "true", "yes"}))
    return c10::nullopt;
  const auto it = plans().find(signature(u, delta, A, B, C, Dsk, z, bias, softplus));
  if (it == plans().end()) return c10::nullopt;
  const Plan& p = it->second;
  return S6Fn::apply(u, delta, A, B, C, Dsk, z, bias, p.fwd, p.bwd, p.shape);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("selective_scan", &selective_scan,
        "v3 selective scan through the compiled kernels with the given plans");
  m.def("register_plan", &register_plan, "keep the plans of a call signature");
  m.def("try_apply", &try_apply, "v3 selective scan by a registered plan, or None");
  m.def("clear_plans", [] { plans().clear(); }, "forget every registered plan");
}
