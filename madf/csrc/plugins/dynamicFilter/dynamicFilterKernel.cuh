/*
 * The fused MADF dynamic filter (docs/ops/MADFDynamicFilter.md), plain CUDA behind a C ABI so the TensorRT plugin's
 * enqueue, the torch test extension and any other host code call the same launch function.
 *
 * It computes the rewrite: one implicit-GEMM convolution with (Cm + 1) * Cout outputs whose result is contracted with
 * [m; 1] per pixel inside the kernel, so neither the per-window kernel tensor theta (official code) nor the
 * (Cm + 1) * Cout intermediate (rewrite in PyTorch) is ever written to memory. The official kernel-generator weight
 * and bias are read in place; no workspace, no cuBLAS, no cuDNN.
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

/* SIMT: FP32 FMA on CUDA cores, any shape. TENSOR_CORE: FP16 WMMA with FP32 accumulation, Cm <= 16. */
typedef enum madfAlgo
{
    MADF_ALGO_AUTO = 0,
    MADF_ALGO_SIMT = 1,
    MADF_ALGO_TENSOR_CORE = 2
} madfAlgo;

typedef struct madfDynamicFilterShape
{
    int32_t batch;         /* N */
    int32_t inChannels;    /* Cin of features (N, Cin, H, W) */
    int32_t height, width; /* H, W */
    int32_t maskChannels;  /* Cm of mask_features (N, Cm, Ho, Wo) */
    int32_t outChannels;   /* Cout */
    int32_t kernelSize, stride, padding;
} madfDynamicFilterShape;

/* floor((in + 2 * padding - kernel) / stride) + 1, or 0 when the window does not fit. */
int32_t madfDynamicFilterOutputSize(int32_t in, int32_t kernelSize, int32_t stride, int32_t padding);

/* NULL when the shape is valid, else a static one-line message saying what is wrong. */
const char* madfDynamicFilterCheck(const madfDynamicFilterShape* shape);

/* The algorithm a call with `requested` would run on the current device (AUTO resolved); SIMT when a tensor-core
 * request cannot be honoured (FP32 data, Cm > 16, or a device older than sm_70). */
madfAlgo madfDynamicFilterSelect(const madfDynamicFilterShape* shape, madfDType dtype, madfAlgo requested);

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

/* madfDynamicFilterForward with the device's facts given (no device query in the launch path). */
cudaError_t madfDynamicFilterForwardOn(const madfDynamicFilterShape* shape, madfDType dtype, madfAlgo algo,
    const madfDeviceFacts* facts, const void* features, const void* maskFeatures, const void* weight, const void* bias,
    void* output, cudaStream_t stream);

/*
 * output (N, Cout, Ho, Wo) = dynamic_filter(features, mask_features, weight, bias); all tensors contiguous NCHW of
 * `dtype`; weight is (Cin*k*k*Cout, Cm, 1, 1) and bias (Cin*k*k*Cout) as the official kernel generator stores them.
 * Asynchronous on `stream`; returns cudaErrorInvalidValue for an invalid shape, else the launch status. Queries the
 * current device on each call: callers that launch often query once (madfDynamicFilterQueryDevice) and call
 * madfDynamicFilterForwardOn.
 */
cudaError_t madfDynamicFilterForward(const madfDynamicFilterShape* shape, madfDType dtype, madfAlgo algo,
    const void* features, const void* maskFeatures, const void* weight, const void* bias, void* output,
    cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif /* MADF_DYNAMIC_FILTER_KERNEL_CUH */
