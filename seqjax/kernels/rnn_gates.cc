// The gate arithmetic of one LSTM / GRU step, forward and backward, as XLA FFI handlers (float32, row-major).
//
// The "hybrid" design: XLA keeps the recurrent matmuls ([B, H] x [H, G*H], its own dot is faster per step
// than a BLAS called from here) and each handler does all the elementwise work of one step in one pass, where
// XLA would run several fusions. The formulas are those of the pure-JAX fused layers (seqjax/kernels/lstm.py,
// gru.py, gru_original.py), whose docstrings are the reference; tests/test_rnn_native.py compares the two.
//
// Conventions shared by all handlers:
//   keep  f32[B]        1 = a valid step, 0 = padding: the state passes through unchanged;
//   rmask f32[B, H]     the variational recurrent-dropout mask, read only when the attribute dropout != 0
//                       (otherwise a [1, 1] placeholder);
//   in the backward pass the gradient w.r.t. the carried h arrives in parts (dhw = the recurrent matmul's
//   output, dh_pass = what passed through padded steps or the GRU interpolation), summed here:
//   dh = dhw * rmask + dh_pass, so XLA does nothing but the dot between two handlers.
//
// Code paths: the loops (rnn_gates_loops.inc) are compiled three times, for AVX-512, AVX2+FMA and the
// baseline, and one of them is chosen at load time from cpuid (__builtin_cpu_supports); the compiler
// vectorises the loops (exp is written out there, so no libm call blocks vectorisation).
#include <cmath>
#include <cstdint>
#include <cstring>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

#define SJ_R __restrict__

namespace {

#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")
namespace avx512 {
#include "rnn_gates_loops.inc"
}  // namespace avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#include "rnn_gates_loops.inc"
}  // namespace avx2
#pragma GCC pop_options

namespace base {
#include "rnn_gates_loops.inc"
}  // namespace base

// 0 = baseline, 1 = AVX2+FMA, 2 = AVX-512. Chosen once from cpuid; seqjax_set_isa can lower it (tests run
// every path the CPU has).
int detected_isa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw"))
    return 2;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
  return 0;
}

int g_isa = detected_isa();

#define SJ_DISPATCH(name, ...)    \
  do {                            \
    if (g_isa == 2) {             \
      avx512::name(__VA_ARGS__);  \
    } else if (g_isa == 1) {      \
      avx2::name(__VA_ARGS__);    \
    } else {                      \
      base::name(__VA_ARGS__);    \
    }                             \
  } while (0)

// The no-dropout loop is its own instantiation, without the mask's conditional load.
#define SJ_DISPATCH_DROPOUT(name, dropout, ...) \
  do {                                          \
    if (dropout) {                              \
      SJ_DISPATCH(name<true>, __VA_ARGS__);     \
    } else {                                    \
      SJ_DISPATCH(name<false>, __VA_ARGS__);    \
    }                                           \
  } while (0)

using F32 = ffi::Buffer<ffi::F32>;
using OutF32 = ffi::ResultBuffer<ffi::F32>;

// Shapes are validated in Python (seqjax/kernels/gates.py) before the call; here only what the loops index.
int64_t rows(const F32& x) { return x.dimensions().size() == 2 ? x.dimensions()[0] : 1; }
int64_t cols(const F32& x) { return x.dimensions().back(); }

ffi::Error LstmFwd(F32 xp, F32 hw, F32 h, F32 c, F32 keep, OutF32 h_new, OutF32 c_new, OutF32 acts) {
  SJ_DISPATCH(lstm_fwd, rows(h), cols(h), xp.typed_data(), hw.typed_data(), h.typed_data(), c.typed_data(),
              keep.typed_data(), h_new->typed_data(), c_new->typed_data(), acts->typed_data());
  return ffi::Error::Success();
}

ffi::Error LstmBwd(F32 acts, F32 c_t, F32 c_before, F32 dy, F32 dhw, F32 dh_pass, F32 dc, F32 keep, F32 rmask,
                   int64_t dropout, OutF32 d_gates, OutF32 dh_pass_new, OutF32 dc_prev) {
  SJ_DISPATCH_DROPOUT(lstm_bwd, dropout != 0, rows(c_t), cols(c_t), acts.typed_data(), c_t.typed_data(), c_before.typed_data(),
              dy.typed_data(), dhw.typed_data(), dh_pass.typed_data(), dc.typed_data(), keep.typed_data(),
              rmask.typed_data(), d_gates->typed_data(), dh_pass_new->typed_data(),
              dc_prev->typed_data());
  return ffi::Error::Success();
}

ffi::Error GruFwd(F32 xp, F32 hw, F32 b_h, F32 h, F32 keep, OutF32 h_new, OutF32 acts) {
  SJ_DISPATCH(gru_fwd, rows(h), cols(h), xp.typed_data(), hw.typed_data(), b_h.typed_data(), h.typed_data(),
              keep.typed_data(), h_new->typed_data(), acts->typed_data());
  return ffi::Error::Success();
}

ffi::Error GruBwd(F32 acts, F32 h_before, F32 dy, F32 dhw, F32 dh_pass, F32 keep, F32 rmask, int64_t dropout,
                  OutF32 d_hp, OutF32 da_n, OutF32 dh_pass_new) {
  SJ_DISPATCH_DROPOUT(gru_bwd, dropout != 0, rows(h_before), cols(h_before), acts.typed_data(), h_before.typed_data(),
              dy.typed_data(), dhw.typed_data(), dh_pass.typed_data(), keep.typed_data(), rmask.typed_data(),
              d_hp->typed_data(), da_n->typed_data(), dh_pass_new->typed_data());
  return ffi::Error::Success();
}

ffi::Error GruOrigRz(F32 xp, F32 a_rz, F32 b_h, F32 hh, OutF32 rz, OutF32 rh) {
  SJ_DISPATCH(gru_orig_rz, rows(hh), cols(hh), xp.typed_data(), a_rz.typed_data(), b_h.typed_data(),
              hh.typed_data(), rz->typed_data(), rh->typed_data());
  return ffi::Error::Success();
}

ffi::Error GruOrigN(F32 xp, F32 a_n, F32 b_h, F32 rz, F32 h, F32 keep, OutF32 h_new, OutF32 n) {
  SJ_DISPATCH(gru_orig_n, rows(h), cols(h), xp.typed_data(), a_n.typed_data(), b_h.typed_data(),
              rz.typed_data(), h.typed_data(), keep.typed_data(), h_new->typed_data(), n->typed_data());
  return ffi::Error::Success();
}

ffi::Error GruOrigBwdN(F32 rz, F32 n, F32 h_before, F32 dy, F32 dhw, F32 dhr, F32 dh_pass, F32 keep, F32 rmask,
                       int64_t dropout, OutF32 da_n, OutF32 da_z, OutF32 dh_pass_new) {
  SJ_DISPATCH_DROPOUT(gru_orig_bwd_n, dropout != 0, rows(n), cols(n), rz.typed_data(), n.typed_data(), h_before.typed_data(),
              dy.typed_data(), dhw.typed_data(), dhr.typed_data(), dh_pass.typed_data(), keep.typed_data(),
              rmask.typed_data(), da_n->typed_data(), da_z->typed_data(),
              dh_pass_new->typed_data());
  return ffi::Error::Success();
}

ffi::Error GruOrigBwdRz(F32 d_rh, F32 hh, F32 rz, F32 da_z, OutF32 da_rz, OutF32 dhr) {
  SJ_DISPATCH(gru_orig_bwd_rz, rows(hh), cols(hh), d_rh.typed_data(), hh.typed_data(), rz.typed_data(),
              da_z.typed_data(), da_rz->typed_data(), dhr->typed_data());
  return ffi::Error::Success();
}

}  // namespace

extern "C" int seqjax_isa() { return g_isa; }

// Use at most the given path (0 baseline, 1 AVX2, 2 AVX-512); returns the path now in use.
extern "C" int seqjax_set_isa(int isa) {
  int best = detected_isa();
  g_isa = isa < best ? (isa < 0 ? 0 : isa) : best;
  return g_isa;
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(seqjax_lstm_fwd, LstmFwd,
                              ffi::Ffi::Bind()
                                  .Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Ret<F32>().Ret<F32>().Ret<F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(seqjax_lstm_bwd, LstmBwd,
                              ffi::Ffi::Bind()
                                  .Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Attr<int64_t>("dropout")
                                  .Ret<F32>().Ret<F32>().Ret<F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(seqjax_gru_fwd, GruFwd,
                              ffi::Ffi::Bind()
                                  .Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Ret<F32>().Ret<F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(seqjax_gru_bwd, GruBwd,
                              ffi::Ffi::Bind()
                                  .Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Arg<F32>()
                                  .Attr<int64_t>("dropout")
                                  .Ret<F32>().Ret<F32>().Ret<F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(seqjax_gru_orig_rz, GruOrigRz,
                              ffi::Ffi::Bind()
                                  .Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Ret<F32>().Ret<F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(seqjax_gru_orig_n, GruOrigN,
                              ffi::Ffi::Bind()
                                  .Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Ret<F32>().Ret<F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(seqjax_gru_orig_bwd_n, GruOrigBwdN,
                              ffi::Ffi::Bind()
                                  .Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Attr<int64_t>("dropout")
                                  .Ret<F32>().Ret<F32>().Ret<F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(seqjax_gru_orig_bwd_rz, GruOrigBwdRz,
                              ffi::Ffi::Bind()
                                  .Arg<F32>().Arg<F32>().Arg<F32>().Arg<F32>()
                                  .Ret<F32>().Ret<F32>());
