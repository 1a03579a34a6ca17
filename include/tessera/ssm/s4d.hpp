// tessera/ssm/s4d.hpp: S4D, the diagonal state space layer of "On the Parameterization and
// Initialization of Diagonal State Space Models" (reference: state-spaces/s4 models/s4/s4d.py).
//
// Parameters (s4d.py's S4DKernel and S4D), H = d_model channels, n_half = N/2 complex modes each:
//   log_dt:     (d_model)
//   log_A_real: (d_model, n_half)     A = -exp(log_A_real) + i·A_imag
//   A_imag:     (d_model, n_half)
//   C:          (d_model, n_half, 2)  complex, torch.view_as_real layout (re, im)
//   D:          (d_model)
// Discretization (ZOH, once at load: s4d_discretize): dtA = A·dt, dA = exp(dtA),
//   C̄ = C · (exp(dtA) - 1) / A. The layer is a causal convolution with the real kernel
//   K[h, j] = 2 Re Σ_n C̄[h,n] exp(j · dtA[h,n])          (the Vandermonde product)
// or, equivalently, the recurrence with complex state x (d_model, n_half):
//   x_t = dA ⊙ x_{t-1} + u_t,   y_t = 2 Re Σ_n C̄_n x_t[n] + D u_t
// then the output activation: GELU (nn.GELU, exact erf), and the layer's output_linear
// (Conv1d(H, 2H, 1) = a linear layer the caller runs) followed by glu().
//
//   u:     (l, d_model)            input
//   state: (d_model, 2, n_half)    in/out complex state (s4d_state), zeros for a fresh sequence
//   y:     (l, d_model)            output (after the activation)
//
// s4d_prefill uses the convolution-kernel form: K from the Vandermonde product (in double), the
// causal convolution of u with K, plus the initial state's contribution 2 Re Σ C̄ dA^{t+1} x_{-1};
// the final state is dA^l x_{-1} + Σ_j dA^j u_{l-1-j}, also a Vandermonde product. s4d_step is the
// recurrence. prefill(n) then step × k equals prefill(n + k).
#pragma once

#include <cmath>
#include <complex>
#include <string>

#include <tessera/core/parallel.hpp>
#include <tessera/core/tensor.hpp>
#include <tessera/core/tensor_view.hpp>
#include <tessera/core/workspace.hpp>
#include <tessera/simd/arch.hpp>
#include <tessera/ssm/ssm_math.hpp>

namespace tessera {
inline namespace v0 {
namespace ssm {

/// Discretized S4D parameters, each (d_model, n_half).
struct s4d_discretized {
  tensor<float, 2> dtA_re, dtA_im;  // dt · A
  tensor<float, 2> dA_re, dA_im;    // exp(dt · A)
  tensor<float, 2> C_re, C_im;      // C · (exp(dtA) - 1) / A
  index_t d_model() const noexcept { return dtA_re.extent(0); }
  index_t n_half() const noexcept { return dtA_re.extent(1); }
};

enum class s4d_activation { none, gelu };

struct s4d_params {
  s4d_activation activation = s4d_activation::gelu;
};

/// ZOH discretization of s4d.py's parameters (a setup function: it allocates its result).
inline s4d_discretized s4d_discretize(tensor_view<const float, 1> log_dt, tensor_view<const float, 2> log_A_real,
                                      tensor_view<const float, 2> A_imag, tensor_view<const float, 3> C) {
  const auto [d_model, n_half] = log_A_real.extents();
  detail::expect_shape(log_dt, extents<1>{d_model}, "s4d_discretize: log_dt (d_model)");
  detail::expect_shape(A_imag, extents<2>{d_model, n_half}, "s4d_discretize: A_imag (d_model, n_half)");
  detail::expect_shape(C, extents<3>{d_model, n_half, 2}, "s4d_discretize: C (d_model, n_half, 2)");
  s4d_discretized r;
  for (auto* t : {&r.dtA_re, &r.dtA_im, &r.dA_re, &r.dA_im, &r.C_re, &r.C_im}) *t = tensor<float, 2>({d_model, n_half});
  for (index_t h = 0; h < d_model; ++h) {
    if (!std::isfinite(log_dt(h)))
      throw config_error("s4d_discretize: log_dt[" + std::to_string(h) + "] = " + std::to_string(log_dt(h)) +
                         " is not finite");
    const double dt = std::exp(static_cast<double>(log_dt(h)));
    for (index_t n = 0; n < n_half; ++n) {
      if (!std::isfinite(log_A_real(h, n)))
        throw config_error("s4d_discretize: log_A_real[" + std::to_string(h) + ", " + std::to_string(n) +
                           "] = " + std::to_string(log_A_real(h, n)) + " is not finite");
      const std::complex<double> A(-std::exp(static_cast<double>(log_A_real(h, n))), A_imag(h, n));
      const std::complex<double> dtA = A * dt, dA = std::exp(dtA);
      const std::complex<double> Cb = std::complex<double>(C(h, n, 0), C(h, n, 1)) * (dA - 1.0) / A;
      r.dtA_re(h, n) = static_cast<float>(dtA.real());
      r.dtA_im(h, n) = static_cast<float>(dtA.imag());
      r.dA_re(h, n) = static_cast<float>(dA.real());
      r.dA_im(h, n) = static_cast<float>(dA.imag());
      r.C_re(h, n) = static_cast<float>(Cb.real());
      r.C_im(h, n) = static_cast<float>(Cb.imag());
    }
  }
  return r;
}

/// The convolution kernel K (d_model, l): K[h, j] = 2 Re Σ_n C̄[h,n] exp(j dtA[h,n]).
inline void s4d_kernel(const s4d_discretized& p, tensor_view<float, 2> K) {
  const index_t d_model = p.d_model(), n_half = p.n_half(), l = K.extent(1);
  detail::expect_shape(K, extents<2>{d_model, l}, "s4d_kernel: K (d_model, l)");
  for (index_t h = 0; h < d_model; ++h)
    for (index_t j = 0; j < l; ++j) {
      double acc = 0;
      for (index_t n = 0; n < n_half; ++n) {
        const std::complex<double> z = std::exp(std::complex<double>(p.dtA_re(h, n), p.dtA_im(h, n)) *
                                                static_cast<double>(j));
        acc += (std::complex<double>(p.C_re(h, n), p.C_im(h, n)) * z).real();
      }
      K(h, j) = static_cast<float>(2 * acc);
    }
}

/// Workspace bytes of s4d_prefill: the kernel K (d_model, l).
inline std::size_t s4d_prefill_workspace_bytes(index_t d_model, index_t l) noexcept {
  return workspace::bytes_for<float>(d_model * l);
}

namespace detail {
inline void check_s4d(const s4d_discretized& p, const tensor_view<const float, 2>& u,
                      const tensor_view<const float, 1>& D, const tensor_view<float, 3>& state,
                      const tensor_view<float, 2>& y, const char* op) {
  const index_t l = u.extent(0), d_model = p.d_model(), n_half = p.n_half();
  expect_extents(u.extents(), extents<2>{l, d_model}, check_name{op, nullptr, "u (l, d_model)"});
  expect_extents(D.extents(), extents<1>{d_model}, check_name{op, nullptr, "D (d_model)"});
  expect_extents(state.extents(), extents<3>{d_model, 2, n_half},
                 check_name{op, nullptr, "state (d_model, 2, n_half)"});
  expect_extents(y.extents(), extents<2>{l, d_model}, check_name{op, nullptr, "y (l, d_model)"});
}

inline float s4d_act(float v, const s4d_params& p) noexcept {
  return p.activation == s4d_activation::gelu ? gelu(v) : v;
}

/// Convolution-kernel form for channels [h0, h1); K (d_model, l) already holds the kernel.
inline void s4d_conv_channels(const s4d_discretized& p, const tensor_view<const float, 2>& u,
                              const tensor_view<const float, 1>& D, const tensor_view<float, 3>& state,
                              const tensor_view<float, 2>& y, const float* K, const s4d_params& prm, index_t h0,
                              index_t h1) {
  const index_t l = u.extent(0), n_half = p.n_half();
  for (index_t h = h0; h < h1; ++h) {
    const float* k = K + h * l;
    for (index_t t = 0; t < l; ++t) {
      // causal convolution with K, plus the initial state's contribution 2 Re Σ C̄ dA^{t+1} x0
      double acc = 0;
      for (index_t j = 0; j <= t; ++j) acc += static_cast<double>(k[j]) * u(t - j, h);
      for (index_t n = 0; n < n_half; ++n) {
        const std::complex<double> x0(state(h, 0, n), state(h, 1, n));
        if (x0 == 0.0) continue;
        const std::complex<double> z =
            std::exp(std::complex<double>(p.dtA_re(h, n), p.dtA_im(h, n)) * static_cast<double>(t + 1));
        acc += 2 * (std::complex<double>(p.C_re(h, n), p.C_im(h, n)) * z * x0).real();
      }
      y(t, h) = s4d_act(static_cast<float>(acc) + D(h) * u(t, h), prm);
    }
    // final state: dA^l x0 + Σ_j dA^j u[l-1-j]
    for (index_t n = 0; n < n_half; ++n) {
      const std::complex<double> dtA(p.dtA_re(h, n), p.dtA_im(h, n));
      std::complex<double> xs = std::exp(dtA * static_cast<double>(l)) *
                                std::complex<double>(state(h, 0, n), state(h, 1, n));
      for (index_t j = 0; j < l; ++j) xs += std::exp(dtA * static_cast<double>(j)) * static_cast<double>(u(l - 1 - j, h));
      state(h, 0, n) = static_cast<float>(xs.real());
      state(h, 1, n) = static_cast<float>(xs.imag());
    }
  }
}

/// Recurrent form for channels [h0, h1), all l tokens.
inline void s4d_recurrent_channels(const s4d_discretized& p, const tensor_view<const float, 2>& u,
                                   const tensor_view<const float, 1>& D, const tensor_view<float, 3>& state,
                                   const tensor_view<float, 2>& y, const s4d_params& prm, index_t h0, index_t h1) {
  const index_t l = u.extent(0), n_half = p.n_half();
  for (index_t h = h0; h < h1; ++h)
    for (index_t t = 0; t < l; ++t) {
      const float ut = u(t, h);
      float acc = 0.f;
      for (index_t n = 0; n < n_half; ++n) {
        const float xr = state(h, 0, n), xi = state(h, 1, n);
        const float ar = p.dA_re(h, n), ai = p.dA_im(h, n);
        const float nr = ar * xr - ai * xi + ut, ni = ar * xi + ai * xr;  // x = dA x + u
        state(h, 0, n) = nr;
        state(h, 1, n) = ni;
        acc += p.C_re(h, n) * nr - p.C_im(h, n) * ni;  // Re(C̄ x)
      }
      y(t, h) = s4d_act(2.f * acc + D(h) * ut, prm);
    }
}
}  // namespace detail

/// Prefill, convolution-kernel form (scalar reference).
inline void s4d_prefill(tensor_view<const float, 2> u, const s4d_discretized& p, tensor_view<const float, 1> D,
                        tensor_view<float, 3> state, tensor_view<float, 2> y, const s4d_params& prm, workspace& ws,
                        simd::scalar) {
  detail::check_s4d(p, u, D, state, y, "s4d_prefill");
  const index_t l = u.extent(0), d_model = p.d_model();
  workspace::frame frame(ws);
  auto K = ws.alloc_view<float>(extents<2>{d_model, l});
  s4d_kernel(p, K);
  detail::s4d_conv_channels(p, u, D, state, y, K.data(), prm, 0, d_model);
}

/// Prefill, convolution-kernel form, channels split over threads (same arithmetic as the reference).
template <class Arch = simd::default_arch>
void s4d_prefill(tensor_view<const float, 2> u, const s4d_discretized& p, tensor_view<const float, 1> D,
                 tensor_view<float, 3> state, tensor_view<float, 2> y, const s4d_params& prm, workspace& ws,
                 Arch = {}) {
  detail::check_s4d(p, u, D, state, y, "s4d_prefill");
  const index_t l = u.extent(0), d_model = p.d_model();
  workspace::frame frame(ws);
  auto K = ws.alloc_view<float>(extents<2>{d_model, l});
  s4d_kernel(p, K);
  parallel_for(0, d_model, 1, [&](index_t h0, index_t h1) {
    detail::s4d_conv_channels(p, u, D, state, y, K.data(), prm, h0, h1);
  });
}

/// Prefill by the recurrence (any l; the cheaper form when l is much larger than n_half).
inline void s4d_scan(tensor_view<const float, 2> u, const s4d_discretized& p, tensor_view<const float, 1> D,
                     tensor_view<float, 3> state, tensor_view<float, 2> y, const s4d_params& prm) {
  detail::check_s4d(p, u, D, state, y, "s4d_scan");
  parallel_for(0, p.d_model(), 1, [&](index_t h0, index_t h1) {
    detail::s4d_recurrent_channels(p, u, D, state, y, prm, h0, h1);
  });
}

/// One token, recurrent form: u, y (d_model).
inline void s4d_step(tensor_view<const float, 1> u, const s4d_discretized& p, tensor_view<const float, 1> D,
                     tensor_view<float, 3> state, tensor_view<float, 1> y, const s4d_params& prm, simd::scalar) {
  const auto u2 = detail::as_row(u);
  const auto y2 = detail::as_row(y);
  detail::check_s4d(p, u2, D, state, y2, "s4d_step");
  detail::s4d_recurrent_channels(p, u2, D, state, y2, prm, 0, p.d_model());
}

template <class Arch = simd::default_arch>
void s4d_step(tensor_view<const float, 1> u, const s4d_discretized& p, tensor_view<const float, 1> D,
              tensor_view<float, 3> state, tensor_view<float, 1> y, const s4d_params& prm, Arch = {}) {
  s4d_step(u, p, D, state, y, prm, simd::scalar{});
}

/// GLU over the channel dimension (nn.GLU(dim=-2) on (b, 2H, l) = the last dim of (l, 2H)):
/// out[t, i] = x[t, i] · sigmoid(x[t, H + i]).  x: (l, 2 * H), out: (l, H).
inline void glu(tensor_view<const float, 2> x, tensor_view<float, 2> out) {
  const auto [l, two_h] = x.extents();
  if (two_h % 2 != 0) throw shape_error("glu: x columns " + std::to_string(two_h) + " are odd");
  const index_t H = two_h / 2;
  detail::expect_shape(out, extents<2>{l, H}, "glu: out (l, H)");
  for (index_t t = 0; t < l; ++t)
    for (index_t i = 0; i < H; ++i) out(t, i) = x(t, i) * detail::sigmoid(x(t, H + i));
}

}  // namespace ssm
}  // namespace v0
}  // namespace tessera
