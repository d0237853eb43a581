# Cython view of csrc/fastloss.h: the one place the C prototypes are re-declared, so a
# mismatch with the header is a compile error in the generated C.
from libc.stdint cimport int64_t

cdef extern from "fastloss.h" nogil:
    double fl_bce_logits_f32(int64_t n, const float *x, const float *y,
                             const float *w, int64_t w_inner, int64_t w_len,
                             const float *pw, int64_t pw_inner, int64_t pw_len,
                             float *loss_out, float *grad_out, double grad_scale)
    double fl_bce_logits_f64(int64_t n, const double *x, const double *y,
                             const double *w, int64_t w_inner, int64_t w_len,
                             const double *pw, int64_t pw_inner, int64_t pw_len,
                             double *loss_out, double *grad_out, double grad_scale)

    double fl_bce_f32(int64_t n, const float *p, const float *y,
                      const float *w, int64_t w_inner, int64_t w_len,
                      float *loss_out, float *grad_out, double grad_scale, int64_t *err_index)
    double fl_bce_f64(int64_t n, const double *p, const double *y,
                      const double *w, int64_t w_inner, int64_t w_len,
                      double *loss_out, double *grad_out, double grad_scale, int64_t *err_index)

    double fl_sigmoid_focal_f32(int64_t n, const float *x, const float *y, double alpha,
                                double gamma, float *loss_out, float *grad_out, double grad_scale)
    double fl_sigmoid_focal_f64(int64_t n, const double *x, const double *y, double alpha,
                                double gamma, double *loss_out, double *grad_out, double grad_scale)

    double fl_huber_f32(int64_t n, const float *x, const float *y, double delta,
                        float *loss_out, float *grad_out, double grad_scale)
    double fl_huber_f64(int64_t n, const double *x, const double *y, double delta,
                        double *loss_out, double *grad_out, double grad_scale)
    double fl_smooth_l1_f32(int64_t n, const float *x, const float *y, double beta,
                            float *loss_out, float *grad_out, double grad_scale)
    double fl_smooth_l1_f64(int64_t n, const double *x, const double *y, double beta,
                            double *loss_out, double *grad_out, double grad_scale)

    double fl_class_target_weight_sum_f32(int64_t n, const int64_t *labels, int64_t C,
                                          const float *weight, int64_t ignore_index,
                                          int64_t *err_index)
    double fl_class_target_weight_sum_f64(int64_t n, const int64_t *labels, int64_t C,
                                          const double *weight, int64_t ignore_index,
                                          int64_t *err_index)

    double fl_softmax_ce_index_f32(int64_t outer, int64_t C, int64_t inner,
                                   const float *x, const int64_t *labels, const float *weight,
                                   int64_t ignore_index, double label_smoothing,
                                   float *loss_out, float *grad_out, double grad_scale,
                                   int64_t *err_index)
    double fl_softmax_ce_index_f64(int64_t outer, int64_t C, int64_t inner,
                                   const double *x, const int64_t *labels, const double *weight,
                                   int64_t ignore_index, double label_smoothing,
                                   double *loss_out, double *grad_out, double grad_scale,
                                   int64_t *err_index)

    double fl_softmax_ce_prob_f32(int64_t outer, int64_t C, int64_t inner,
                                  const float *x, const float *t, const float *weight,
                                  double label_smoothing,
                                  float *loss_out, float *grad_out, double grad_scale)
    double fl_softmax_ce_prob_f64(int64_t outer, int64_t C, int64_t inner,
                                  const double *x, const double *t, const double *weight,
                                  double label_smoothing,
                                  double *loss_out, double *grad_out, double grad_scale)

    double fl_softmax_focal_f32(int64_t outer, int64_t C, int64_t inner,
                                const float *x, const int64_t *labels, const float *alpha,
                                double gamma, int64_t ignore_index,
                                float *loss_out, float *grad_out, double grad_scale,
                                int64_t *err_index)
    double fl_softmax_focal_f64(int64_t outer, int64_t C, int64_t inner,
                                const double *x, const int64_t *labels, const double *alpha,
                                double gamma, int64_t ignore_index,
                                double *loss_out, double *grad_out, double grad_scale,
                                int64_t *err_index)

    int fl_dice_f32(int64_t B, int64_t C, int64_t Sp, const float *x, const float *t,
                    const int64_t *labels, int activation, int64_t c0,
                    int squared_pred, int jaccard, double smooth_nr, double smooth_dr,
                    int batch, const float *weight, double *f_out, float *grad_out,
                    double grad_scale, int64_t *err_index)
    int fl_dice_f64(int64_t B, int64_t C, int64_t Sp, const double *x, const double *t,
                    const int64_t *labels, int activation, int64_t c0,
                    int squared_pred, int jaccard, double smooth_nr, double smooth_dr,
                    int batch, const double *weight, double *f_out, double *grad_out,
                    double grad_scale, int64_t *err_index)

    void fl_stream_triad_f32(int64_t n, float *a, const float *b, const float *c, double s)
    void fl_stream_triad_f64(int64_t n, double *a, const double *b, const double *c, double s)

    ctypedef void (*fl_task_fn)(void *ctx, int64_t task) noexcept nogil
    int fl_parallel_for(int64_t n_tasks, int n_threads, fl_task_fn fn, void *ctx)
    ctypedef int (*fl_poll_fn)(void *poll_ctx) noexcept
    int fl_parallel_for_poll(int64_t n_tasks, int n_threads, fl_task_fn fn, void *ctx,
                             fl_poll_fn poll, void *poll_ctx, int interval_ms)
    int fl_num_cores()

    int fl_dispatch_init(const char *target)
    const char *fl_dispatch_target()
    int fl_target_supported(const char *target)
    const char *fl_target_names()
    const char *fl_kernel_names()
    const char *fl_cpu_features()
    const char *fl_compiler()


cdef inline int init_dispatch() except -1:
    """Points this extension's kernel names at the best target the CPU supports, or at
    the one FASTLOSS_TARGET names (ImportError when unknown or unsupported).  Each
    extension module links its own copy of the kernels and calls this at import."""
    import os
    target = os.environ.get("FASTLOSS_TARGET", "").strip()
    rc = fl_dispatch_init(target.encode())
    if rc == -1:
        raise ImportError(f"FASTLOSS_TARGET={target!r} is not a target of this build "
                          f"(compiled targets: {fl_target_names().decode().strip()})")
    if rc == -2:
        raise ImportError(f"FASTLOSS_TARGET={target!r}: this CPU does not support that "
                          f"target (detected features: {fl_cpu_features().decode()})")
    return 0
