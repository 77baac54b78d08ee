/*
 * The fused MADF dynamic filter (docs/ops/MADFDynamicFilter.md), plain CUDA behind a C ABI so the TensorRT plugin's
 * enqueue, the torch test extension and any other host code call the same launch function.
 *
 * It computes the rewrite: one implicit-GEMM convolution with (Cm + 1) * Cout outputs whose result is contracted with
 * [m; 1] per pixel inside the kernel, so neither the per-window kernel tensor theta (official code) nor the
 * (Cm + 1) * Cout intermediate (rewrite in PyTorch) is ever written to memory. The official kernel-generator weight
 * and bias are read in place; no cuBLAS, no cuDNN, and no workspace but split-K's FP32 partial outputs.
 */
#ifndef MADF_DYNAMIC_FILTER_KERNEL_CUH
#define MADF_DYNAMIC_FILTER_KERNEL_CUH

#include <cuda_runtime_api.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum madfDType
{
    MADF_FLOAT32 = 0,
    MADF_FLOAT16 = 1
} madfDType;

/* SIMT: FP32 FMA on CUDA cores, any shape. TENSOR_CORE: FP16 WMMA with FP32 accumulation, Cm <= 16 (round 1).
 * PIPELINED: the cheaper stage (round 2): a 3-deep cp.async pipeline, addresses advanced by a constant per stage, the
 * window walked tap-major (32 channels at one tap) when Cin % 32 == 0; needs FP16, Cm == 16, Cout % 16 == 0, and
 * falls back to TENSOR_CORE otherwise. SPLIT_K: PIPELINED with the window split over S CTAs per output tile, whose
 * contracted FP32 tiles a second kernel sums in a fixed order (deterministic) from the workspace. */
typedef enum madfAlgo
{
    MADF_ALGO_AUTO = 0,
    MADF_ALGO_SIMT = 1,
    MADF_ALGO_TENSOR_CORE = 2,
    MADF_ALGO_PIPELINED = 3,
    MADF_ALGO_SPLIT_K = 4
} madfAlgo;

/* A tactic (what TensorRT's builder times, what the torch binding's `algo` names): a madfAlgo in the low byte and,
 * for MADF_ALGO_SPLIT_K, the split count S (2..8) above it; S = 0 picks it per call (about one CTA per SM, at least
 * two stages per CTA). */
typedef int32_t madfTactic;
#define MADF_TACTIC(algo, splits) ((madfTactic)(algo) | ((madfTactic)(splits) << 8))
#define MADF_TACTIC_ALGO(tactic) ((madfAlgo)((tactic)&0xff))
#define MADF_TACTIC_SPLITS(tactic) ((int32_t)((tactic) >> 8))
#define MADF_MAX_SPLITS 8

/* The memory layout of `features`: NCHW, or NHWC (TensorRT's kHWC8 when Cin % 8 == 0), which only the PIPELINED and
 * SPLIT_K tactics read (16-byte copies of 8 channels), and only when Cin % 32 == 0. */
typedef enum madfLayout
{
    MADF_LAYOUT_NCHW = 0,
    MADF_LAYOUT_NHWC = 1
} madfLayout;

typedef struct madfDynamicFilterShape
{
    int32_t batch;         /* N */
    int32_t inChannels;    /* Cin of features (N, Cin, H, W) */
    int32_t height, width; /* H, W */
    int32_t maskChannels;  /* Cm of mask_features (N, Cm, Ho, Wo) */
    int32_t outChannels;   /* Cout */
    int32_t kernelSize, stride, padding;
    int32_t featuresLayout; /* madfLayout of features; mask_features and the output are always NCHW */
} madfDynamicFilterShape;

/* floor((in + 2 * padding - kernel) / stride) + 1, or 0 when the window does not fit. */
int32_t madfDynamicFilterOutputSize(int32_t in, int32_t kernelSize, int32_t stride, int32_t padding);

/* NULL when the shape is valid, else a static one-line message saying what is wrong. */
const char* madfDynamicFilterCheck(const madfDynamicFilterShape* shape);

/* The tactic a call with `requested` would run on the current device: AUTO resolved (today: TENSOR_CORE for FP16
 * NCHW, PIPELINED for NHWC), a variant that cannot run this shape replaced by the one that can (SIMT for FP32 data,
 * Cm > 16 or a device older than sm_70; TENSOR_CORE for PIPELINED without Cm == 16 and Cout % 16 == 0), and the
 * split count of SPLIT_K filled in (1 means unsplit). Returns 0 (AUTO) when nothing can run it: NHWC features that
 * no tensor-core variant can read. */
madfTactic madfDynamicFilterSelect(const madfDynamicFilterShape* shape, madfDType dtype, madfTactic requested);

/* Shared memory bytes the SIMT kernel needs for this shape (it grows with Cm). */
size_t madfDynamicFilterSimtSharedBytes(int32_t maskChannels);

/* What the launcher needs to know of a device: asked once (per TensorRT context, per torch device), not per launch. */
typedef struct madfDeviceFacts
{
    int32_t device;          /* the CUDA device index the facts are of */
    int32_t computeMajor;    /* compute capability, major */
    int32_t multiprocessors; /* SM count */
    size_t sharedLimit;      /* opt-in shared memory per block, bytes */
} madfDeviceFacts;

/* The current device's facts; cudaSuccess or the failing query's error. */
cudaError_t madfDynamicFilterQueryDevice(madfDeviceFacts* facts);

/* The workspace bytes a call needs: S * N * Cout * Ho * Wo FP32 partial outputs for a split-K call, else 0. */
size_t madfDynamicFilterWorkspaceSize(
    const madfDynamicFilterShape* shape, madfDType dtype, madfTactic tactic, const madfDeviceFacts* facts);

/* madfDynamicFilterForward with the device's facts given (no device query in the launch path). */
cudaError_t madfDynamicFilterForwardOn(const madfDynamicFilterShape* shape, madfDType dtype, madfTactic tactic,
    const madfDeviceFacts* facts, const void* features, const void* maskFeatures, const void* weight, const void* bias,
    void* output, void* workspace, size_t workspaceBytes, cudaStream_t stream);

/*
 * output (N, Cout, Ho, Wo) = dynamic_filter(features, mask_features, weight, bias); all tensors contiguous NCHW of
 * `dtype`; weight is (Cin*k*k*Cout, Cm, 1, 1) and bias (Cin*k*k*Cout) as the official kernel generator stores them.
 * (features NHWC when shape->featuresLayout says so). A split-K tactic uses at most `workspaceBytes` of `workspace`
 * (device memory, any content), fewer splits when that is less than madfDynamicFilterWorkspaceSize, none without it.
 * Asynchronous on `stream`; returns cudaErrorInvalidValue for an invalid shape or a layout the tactic cannot read,
 * else the launch status. Queries the current device on each call: callers that launch often query once
 * (madfDynamicFilterQueryDevice) and call madfDynamicFilterForwardOn.
 */
cudaError_t madfDynamicFilterForward(const madfDynamicFilterShape* shape, madfDType dtype, madfTactic tactic,
    const void* features, const void* maskFeatures, const void* weight, const void* bias, void* output, void* workspace,
    size_t workspaceBytes, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* MADF_DYNAMIC_FILTER_KERNEL_CUH */
