// The conformance harness (ggml's test-backend-ops idea): every kernel and op of the compiled arch
// against its simd::scalar reference AND a double-precision reference, on random data at sizes
// 1, 7, 15, 16, 17, 31, 33, 100, 1000, with odd row strides (row stride > d) and misaligned
// starts, compared by normalized MSE (Σ(a-b)² / Σb²) with per-dtype tolerances.
//
// Tolerances: arch vs scalar and both vs a double reference computed on the values actually
// stored (f16 / bf16 weights widened exactly): 1e-10 (f32 arithmetic; transcendental kernels have
// a few ulp). Against a double reference on the *original* f32 weights, the weight dtype's
// rounding dominates: f32 1e-10, f16 1e-6, bf16 1e-4.
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <tessera/kernels/kernels.hpp>
#include <tessera/ops/ops.hpp>

#include "common/test_util.hpp"
#include "conformance/reference.hpp"

using namespace tessera;
using namespace tessera::test;

namespace {

constexpr index_t sizes[] = {1, 7, 15, 16, 17, 31, 33, 100, 1000};
constexpr double tol_exact = 1e-10;  // same stored values, f32 arithmetic

template <class W>
constexpr double tol_dtype() {
  if constexpr (std::is_same_v<W, float>) return 1e-10;
  else if constexpr (std::is_same_v<W, f16>) return 1e-6;
  else return 1e-4;
}

template <class W>
const char* dtype_label() {
  return dtype_name(dtype_of<W>()).data();
}

/// Checks the arch and scalar results against each other and the double reference.
void compare(const std::string& what, const std::vector<float>& arch, const std::vector<float>& scalar,
             const std::vector<double>& ref, double tol = tol_exact) {
  REQUIRE(arch.size() == ref.size());
  REQUIRE(scalar.size() == ref.size());
  const auto n = static_cast<index_t>(ref.size());
  const double e_arch = nmse(arch.data(), ref.data(), n);
  const double e_scalar = nmse(scalar.data(), ref.data(), n);
  const double e_pair = nmse(arch.data(), scalar.data(), n);
  INFO(what << " [" << simd::arch_name<simd::default_arch>() << "]: nmse arch " << e_arch << ", scalar " << e_scalar
            << ", arch vs scalar " << e_pair << " (tol " << tol << ")");
  CHECK(e_arch <= tol);
  CHECK(e_scalar <= tol);
  CHECK(e_pair <= tol_exact);
}

/// n random floats starting one float past a 64-byte boundary (misaligned).
struct buffer {
  std::vector<float> storage;
  float* p;
  explicit buffer(index_t n, float lo = -2.f, float hi = 2.f) : storage(random_vector(n + 1, lo, hi)), p(storage.data() + 1) {}
  std::vector<float> vec(index_t n) const { return {p, p + n}; }
};

std::vector<double> map_ref(const std::vector<float>& x, double (*f)(double)) {
  std::vector<double> r;
  for (float v : x) r.push_back(f(v));
  return r;
}

/// A random (n, d) view with row stride d + pad (pad odd) over storage.
tensor_view<float, 2> strided(tensor<float, 2>& storage, index_t n, index_t d, index_t pad = 3, float lo = -2.f,
                              float hi = 2.f) {
  storage = random_tensor<2>({n, d + pad}, lo, hi);
  return storage.view().slice(1, 0, d);
}

std::vector<float> flat(tensor_view<const float, 2> v) {
  std::vector<float> r;
  for (index_t i = 0; i < v.extent(0); ++i)
    for (index_t j = 0; j < v.extent(1); ++j) r.push_back(v(i, j));
  return r;
}

template <class W, std::size_t Rank>
tensor<W, Rank> narrow(const tensor<float, Rank>& t) {
  tensor<W, Rank> r(t.extents());
  for (index_t i = 0; i < t.size(); ++i) r.data()[i] = from_float<W>(t.data()[i]);
  return r;
}

}  // namespace

TEST_CASE("conformance: elementwise and activation kernels", "[conformance]") {
  using unary_fn = std::function<void(index_t, const float*, float*)>;
  struct unary_case {
    const char* name;
    unary_fn arch, scalar;
    double (*ref)(double);
  };
#define TESSERA_UNARY(name)                                                                                  \
  unary_case {                                                                                               \
    #name, [](index_t n, const float* x, float* y) { kernels::vec_##name(n, x, y); },                        \
        [](index_t n, const float* x, float* y) { kernels::vec_##name(n, x, y, simd::scalar{}); },           \
        [](double v) { return ref::name(v); }                                                                \
  }
  const unary_case unary[] = {TESSERA_UNARY(exp),      TESSERA_UNARY(tanh),      TESSERA_UNARY(erf),
                              TESSERA_UNARY(sigmoid),  TESSERA_UNARY(silu),      TESSERA_UNARY(softplus),
                              TESSERA_UNARY(gelu),     TESSERA_UNARY(gelu_tanh), TESSERA_UNARY(quick_gelu),
                              TESSERA_UNARY(relu)};
#undef TESSERA_UNARY
  for (index_t n : sizes) {
    const buffer a(n, -6.f, 6.f), b(n);
    std::vector<float> ya(n), ys(n);
    for (const auto& c : unary) {
      c.arch(n, a.p, ya.data());
      c.scalar(n, a.p, ys.data());
      compare(std::string("vec_") + c.name + " n=" + std::to_string(n), ya, ys, map_ref(a.vec(n), c.ref));
    }
    const auto av = a.vec(n), bv = b.vec(n);
    std::vector<double> r(n);
    // binary
    kernels::vec_add(n, a.p, b.p, ya.data());
    kernels::vec_add(n, a.p, b.p, ys.data(), simd::scalar{});
    for (index_t i = 0; i < n; ++i) r[i] = double(av[i]) + bv[i];
    compare("vec_add n=" + std::to_string(n), ya, ys, r);
    kernels::vec_mul(n, a.p, b.p, ya.data());
    kernels::vec_mul(n, a.p, b.p, ys.data(), simd::scalar{});
    for (index_t i = 0; i < n; ++i) r[i] = double(av[i]) * bv[i];
    compare("vec_mul n=" + std::to_string(n), ya, ys, r);
    kernels::vec_scale(n, a.p, 0.37f, ya.data());
    kernels::vec_scale(n, a.p, 0.37f, ys.data(), simd::scalar{});
    for (index_t i = 0; i < n; ++i) r[i] = 0.37 * av[i];
    compare("vec_scale n=" + std::to_string(n), ya, ys, r, 1e-12);
    kernels::vec_add_scalar(n, a.p, -1.5f, ya.data());
    kernels::vec_add_scalar(n, a.p, -1.5f, ys.data(), simd::scalar{});
    for (index_t i = 0; i < n; ++i) r[i] = av[i] - 1.5;
    compare("vec_add_scalar n=" + std::to_string(n), ya, ys, r);
    ya = bv;
    ys = bv;
    kernels::vec_axpy(n, 0.25f, a.p, ya.data());
    kernels::vec_axpy(n, 0.25f, a.p, ys.data(), simd::scalar{});
    for (index_t i = 0; i < n; ++i) r[i] = bv[i] + 0.25 * av[i];
    compare("vec_axpy n=" + std::to_string(n), ya, ys, r);
    // gated
    struct gated_case {
      const char* name;
      void (*arch)(index_t, const float*, const float*, float*);
      void (*scalar)(index_t, const float*, const float*, float*);
      double (*f)(double);
    };
    const gated_case gated[] = {
        {"vec_swiglu", [](index_t k, const float* g, const float* u, float* o) { kernels::vec_swiglu(k, g, u, o); },
         [](index_t k, const float* g, const float* u, float* o) { kernels::vec_swiglu(k, g, u, o, simd::scalar{}); },
         [](double v) { return ref::silu(v); }},
        {"vec_geglu", [](index_t k, const float* g, const float* u, float* o) { kernels::vec_geglu(k, g, u, o); },
         [](index_t k, const float* g, const float* u, float* o) { kernels::vec_geglu(k, g, u, o, simd::scalar{}); },
         [](double v) { return ref::gelu(v); }},
        {"vec_geglu_tanh",
         [](index_t k, const float* g, const float* u, float* o) { kernels::vec_geglu_tanh(k, g, u, o); },
         [](index_t k, const float* g, const float* u, float* o) {
           kernels::vec_geglu_tanh(k, g, u, o, simd::scalar{});
         },
         [](double v) { return ref::gelu_tanh(v); }},
        {"vec_reglu", [](index_t k, const float* g, const float* u, float* o) { kernels::vec_reglu(k, g, u, o); },
         [](index_t k, const float* g, const float* u, float* o) { kernels::vec_reglu(k, g, u, o, simd::scalar{}); },
         [](double v) { return ref::relu(v); }},
        {"vec_quick_geglu",
         [](index_t k, const float* g, const float* u, float* o) { kernels::vec_quick_geglu(k, g, u, o); },
         [](index_t k, const float* g, const float* u, float* o) {
           kernels::vec_quick_geglu(k, g, u, o, simd::scalar{});
         },
         [](double v) { return ref::quick_gelu(v); }},
    };
    for (const auto& c : gated) {
      c.arch(n, a.p, b.p, ya.data());
      c.scalar(n, a.p, b.p, ys.data());
      for (index_t i = 0; i < n; ++i) r[i] = c.f(av[i]) * bv[i];
      compare(std::string(c.name) + " n=" + std::to_string(n), ya, ys, r);
    }
  }
}

TEST_CASE("conformance: reductions", "[conformance]") {
  for (index_t n : sizes) {
    const buffer a(n, -3.f, 3.f), b(n);
    const auto av = a.vec(n), bv = b.vec(n);
    double s = 0, ss = 0, dt = 0, mx = -1e300;
    for (index_t i = 0; i < n; ++i) {
      s += av[i];
      ss += double(av[i]) * av[i];
      dt += double(av[i]) * bv[i];
      mx = std::max(mx, double(av[i]));
    }
    const double mu = s / n;
    double dev = 0, se = 0;
    for (index_t i = 0; i < n; ++i) {
      dev += (av[i] - mu) * (av[i] - mu);
      se += std::exp(av[i] - mx);
    }
    const std::string sz = " n=" + std::to_string(n);
    // a sum can cancel: compare it relative to Σ|x|
    double sabs = 0;
    for (float v : av) sabs += std::abs(v);
    CHECK(std::abs(kernels::sum(n, a.p) - s) <= 1e-6 * sabs);
    CHECK(std::abs(kernels::sum(n, a.p, simd::scalar{}) - s) <= 1e-6 * sabs);
    compare("sum_sq" + sz, {kernels::sum_sq(n, a.p)}, {kernels::sum_sq(n, a.p, simd::scalar{})}, {ss});
    compare("sum_sq_dev" + sz, {kernels::sum_sq_dev(n, a.p, float(mu))},
            {kernels::sum_sq_dev(n, a.p, float(mu), simd::scalar{})}, {dev});
    double dabs = 0;
    for (index_t i = 0; i < n; ++i) dabs += std::abs(double(av[i]) * bv[i]);
    CHECK(std::abs(kernels::dot(n, a.p, b.p) - dt) <= 1e-6 * dabs);
    CHECK(std::abs(kernels::dot(n, a.p, b.p, simd::scalar{}) - dt) <= 1e-6 * dabs);
    CHECK(kernels::max(n, a.p) == float(mx));
    CHECK(kernels::max(n, a.p, simd::scalar{}) == float(mx));
    compare("sum_exp" + sz, {kernels::sum_exp(n, a.p, float(mx))}, {kernels::sum_exp(n, a.p, float(mx), simd::scalar{})},
            {se});
    std::vector<float> ea(n), es(n);
    const float ta = kernels::exp_sum(n, a.p, float(mx), ea.data());
    const float ts = kernels::exp_sum(n, a.p, float(mx), es.data(), simd::scalar{});
    compare("exp_sum (total)" + sz, {ta}, {ts}, {se});
    std::vector<double> er;
    for (float v : av) er.push_back(std::exp(double(v) - mx));
    compare("exp_sum (values)" + sz, ea, es, er);
  }
}

/// Operands of c = x · wᵀ (+ bias) for m rows, n outputs of size-class s: x with a padded row
/// stride, w stored as W (row stride k + 3) and its f32 original, and a label for messages.
template <class W>
struct product_case {
  index_t m, n, k;
  tensor<float, 2> xs_;
  tensor_view<float, 2> x;
  tensor<float, 2> w32;
  tensor<W, 2> wn;
  tensor_view<const W, 2> w;
  tensor_view<const float, 2> w_full;
  tensor<float, 1> bias;
  std::string sz;

  product_case(index_t m_, index_t s)
      : m(m_), n(s), k(s == 1000 ? 333 : s + 2), x(strided(xs_, m, k, 5)), w32(random_tensor<2>({n, k + 3})),
        wn(narrow<W>(w32)), w(wn.cview().slice(1, 0, k)), w_full(w32.cview().slice(1, 0, k)),
        bias(random_tensor<1>({n})),
        sz(std::string(" ") + dtype_label<W>() + " m=" + std::to_string(m) + " n=" + std::to_string(n) +
           " k=" + std::to_string(k)) {}
};

TEMPLATE_TEST_CASE("conformance: gemm, gemv and linear", "[conformance]", float, f16, bf16) {
  for (index_t s : sizes) {
    product_case<TestType> c(std::min<index_t>(s, 33), s);
    const auto& [m, n, k, xs_, x, w32, wn, w, w_full, bias, sz] = c;
    tensor<float, 2> cs_;
    workspace ws(ops::linear_workspace_bytes<TestType>(k));
    const auto want_stored = ref::linear<TestType>(x, w, std::nullopt);
    const auto want_f32 = ref::linear<float>(x, w_full, std::nullopt);
    // gemm (odd output stride)
    auto ca = strided(cs_, m, n, 1);
    tensor<float, 2> cs({m, n});
    kernels::gemm(tensor_view<const float, 2>(x), w, ca, ws);
    kernels::gemm(tensor_view<const float, 2>(x), w, cs.view(), ws, simd::scalar{});
    compare("gemm" + sz, flat(ca), flat(cs.cview()), want_stored);
    compare("gemm vs f32 weights" + sz, flat(ca), flat(cs.cview()), want_f32, tol_dtype<TestType>());
    // gemv on the first row
    tensor<float, 1> ya({n}), ys({n});
    kernels::gemv(tensor_view<const float, 2>(x)[0], w, ya.view());
    kernels::gemv(tensor_view<const float, 2>(x)[0], w, ys.view(), simd::scalar{});
    compare("gemv" + sz, {ya.begin(), ya.end()}, {ys.begin(), ys.end()},
            std::vector<double>(want_stored.begin(), want_stored.begin() + n));
    // linear with bias
    tensor<float, 2> la({m, n}), ls({m, n});
    ops::linear(x, w, bias.cview(), la.view(), ws);
    ops::linear(x, w, bias.cview(), ls.view(), ws, simd::scalar{});
    compare("linear" + sz, flat(la.cview()), flat(ls.cview()), ref::linear<TestType>(x, w, bias.cview()));
  }
}

TEMPLATE_TEST_CASE("conformance: gemv_rows (batched decode) and linear at 2 .. gemv_rows_max_m rows", "[conformance]", float,
                   f16, bf16) {
  for (index_t m_rows : {index_t{2}, index_t{3}, index_t{5}, index_t{8}, kernels::gemv_rows_max_m<>})
    for (index_t s : sizes) {
      product_case<TestType> c(m_rows, s);
      const auto& [m, n, k, xs_, x, w32, wn, w, w_full, bias, sz] = c;
      tensor<float, 2> cs_;
      const auto want_stored = ref::linear<TestType>(x, w, std::nullopt);
      auto ca = strided(cs_, m, n, 1);  // odd output stride
      tensor<float, 2> cs({m, n});
      kernels::gemv_rows(tensor_view<const float, 2>(x), w, ca);
      kernels::gemv_rows(tensor_view<const float, 2>(x), w, cs.view(), simd::scalar{});
      compare("gemv_rows" + sz, flat(ca), flat(cs.cview()), want_stored);
      compare("gemv_rows vs f32 weights" + sz, flat(ca), flat(cs.cview()), ref::linear<float>(x, w_full, std::nullopt),
              tol_dtype<TestType>());
      // linear with bias, and no room for gemm's scratch: these m take gemv_rows
      workspace ws(0);
      tensor<float, 2> la({m, n}), ls({m, n});
      ops::linear(x, w, bias.cview(), la.view(), ws);
      ops::linear(x, w, bias.cview(), ls.view(), ws, simd::scalar{});
      compare("linear" + sz, flat(la.cview()), flat(ls.cview()), ref::linear<TestType>(x, w, bias.cview()));
    }
}

TEMPLATE_TEST_CASE("conformance: rms_norm, layer_norm and get_rows", "[conformance]", float, f16, bf16) {
  const char* dt = dtype_label<TestType>();
  for (index_t d : sizes) {
    const index_t n = 3;
    tensor<float, 2> xs_, os_;
    auto x = strided(xs_, n, d, 7, -1.f, 3.f);
    const auto w32 = random_tensor<1>({d}, 0.5f, 1.5f), b32 = random_tensor<1>({d});
    const auto w = narrow<TestType>(w32), b = narrow<TestType>(b32);
    const std::string sz = std::string(" ") + dt + " d=" + std::to_string(d);
    auto oa = strided(os_, n, d, 1);
    tensor<float, 2> o_s({n, d});
    ops::rms_norm(x, w.cview(), oa, 1e-5f);
    ops::rms_norm(x, w.cview(), o_s.view(), 1e-5f, simd::scalar{});
    compare("rms_norm" + sz, flat(oa), flat(o_s.cview()), ref::rms_norm<TestType>(x, w.cview(), 1e-5));
    compare("rms_norm vs f32 weight" + sz, flat(oa), flat(o_s.cview()), ref::rms_norm<float>(x, w32.cview(), 1e-5),
            tol_dtype<TestType>());
    ops::layer_norm(x, w.cview(), b.cview(), oa, 1e-5f);
    ops::layer_norm(x, w.cview(), b.cview(), o_s.view(), 1e-5f, simd::scalar{});
    compare("layer_norm" + sz, flat(oa), flat(o_s.cview()),
            ref::layer_norm<TestType>(x, w.cview(), b.cview(), 1e-5));
    // get_rows from a (vocab, d) table with padded rows
    const auto t32 = random_tensor<2>({40, d + 2});
    const auto tn = narrow<TestType>(t32);
    const auto table = tn.cview().slice(1, 0, d);
    const std::vector<std::int32_t> ids{39, 0, 7};
    ops::get_rows(table, ids, oa);
    ops::get_rows(table, ids, o_s.view(), simd::scalar{});
    std::vector<double> gr;
    for (auto id : ids)
      for (index_t i = 0; i < d; ++i) gr.push_back(to_float(table(id, i)));
    compare("get_rows" + sz, flat(oa), flat(o_s.cview()), gr, 0.0);
  }
}

TEST_CASE("conformance: softmax, log_softmax, masked softmax, rope, gated activations, add/mul", "[conformance]") {
  for (index_t d : sizes) {
    const index_t n = 4;
    tensor<float, 2> xs_, os_, ms_, us_;
    auto x = strided(xs_, n, d, 5, -8.f, 8.f);
    auto mask = strided(ms_, n, d, 3, -2.f, 0.f);
    if (d > 1) mask(1, d / 2) = -std::numeric_limits<float>::infinity();
    auto up = strided(us_, n, d, 1);
    auto oa = strided(os_, n, d, 1);
    tensor<float, 2> o_s({n, d});
    const std::string sz = " d=" + std::to_string(d);
    ops::softmax(x, oa);
    ops::softmax(x, o_s.view(), simd::scalar{});
    compare("softmax" + sz, flat(oa), flat(o_s.cview()), ref::softmax(x, std::nullopt, false));
    ops::log_softmax(x, oa);
    ops::log_softmax(x, o_s.view(), simd::scalar{});
    compare("log_softmax" + sz, flat(oa), flat(o_s.cview()), ref::softmax(x, std::nullopt, true));
    ops::softmax(x, mask, oa);
    ops::softmax(x, mask, o_s.view(), simd::scalar{});
    compare("softmax masked" + sz, flat(oa), flat(o_s.cview()), ref::softmax(x, mask, false));
    ops::softmax(x, mask.slice(0, 2, 3), oa);
    ops::softmax(x, mask.slice(0, 2, 3), o_s.view(), simd::scalar{});
    compare("softmax masked (broadcast row)" + sz, flat(oa), flat(o_s.cview()),
            ref::softmax(x, tensor_view<const float, 2>(mask.slice(0, 2, 3)), false));
    for (auto act : {ops::activation::silu, ops::activation::gelu, ops::activation::gelu_tanh,
                     ops::activation::quick_gelu, ops::activation::relu}) {
      ops::gated_activation(act, x, up, oa);
      ops::gated_activation(act, x, up, o_s.view(), simd::scalar{});
      std::vector<double> r;
      for (index_t t = 0; t < n; ++t)
        for (index_t i = 0; i < d; ++i) {
          const double g = x(t, i);
          const double a = act == ops::activation::silu        ? ref::silu(g)
                           : act == ops::activation::gelu      ? ref::gelu(g)
                           : act == ops::activation::gelu_tanh ? ref::gelu_tanh(g)
                           : act == ops::activation::quick_gelu ? ref::quick_gelu(g)
                                                               : ref::relu(g);
          r.push_back(a * up(t, i));
        }
      compare(std::string("gated_activation ") + std::string(ops::activation_name(act)) + sz, flat(oa),
              flat(o_s.cview()), r);
    }
    ops::add(x, up, oa);
    ops::add(x, up, o_s.view(), simd::scalar{});
    std::vector<double> ra, rm;
    for (index_t t = 0; t < n; ++t)
      for (index_t i = 0; i < d; ++i) {
        ra.push_back(double(x(t, i)) + up(t, i));
        rm.push_back(double(x(t, i)) * up(t, i));
      }
    compare("add" + sz, flat(oa), flat(o_s.cview()), ra);
    ops::mul(x, up, oa);
    ops::mul(x, up, o_s.view(), simd::scalar{});
    compare("mul" + sz, flat(oa), flat(o_s.cview()), rm);
  }
  // rope: head_dim over the sizes that are even, neox and gptj, full and partial
  for (index_t hd : {2, 16, 34, 100, 256}) {
    for (auto mode : {ops::rope_mode::neox, ops::rope_mode::gptj}) {
      for (index_t rd : {hd, hd / 2 - (hd / 2) % 2}) {
        if (rd == 0) continue;
        const index_t l = 5, nh = 3;
        auto x0 = random_tensor<3>({l, nh + 1, hd});  // heads [0, nh) of a wider tensor: strided
        std::vector<std::int32_t> pos{0, 1, 17, 4095, 100000};
        const auto inv = ops::rope_default_inv_freq(rd, 10000.f);
        const tensor_view<const std::int32_t, 1> pv(pos.data(), {l});
        const tensor_view<const float, 1> iv(inv.data(), {rd / 2});
        const ops::rope_params params{.mode = mode, .attention_scaling = 1.1f};
        auto xa = x0, xs = x0;
        ops::rope(xa.view().slice(1, 0, nh), pv, iv, params);
        ops::rope(xs.view().slice(1, 0, nh), pv, iv, params, simd::scalar{});
        const auto want = ref::rope(x0.cview().slice(1, 0, nh), pos, inv, mode == ops::rope_mode::neox, 1.1);
        auto flat3 = [&](const tensor<float, 3>& t) {
          std::vector<float> r;
          for (index_t a = 0; a < l; ++a)
            for (index_t b = 0; b < nh; ++b)
              for (index_t c = 0; c < hd; ++c) r.push_back(t(a, b, c));
          return r;
        };
        compare("rope " + std::string(mode == ops::rope_mode::neox ? "neox" : "gptj") + " head_dim=" +
                    std::to_string(hd) + " rotary_dim=" + std::to_string(rd),
                flat3(xa), flat3(xs), want);
      }
    }
  }
}
