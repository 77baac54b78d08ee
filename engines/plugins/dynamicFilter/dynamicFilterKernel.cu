/*
 * Fused MADF dynamic filter kernels. For output pixel p and output channel o (D = Cin*k*k, the window length):
 *
 *     y[p, o] = sum_{c <= Cm} mv[p, c] * sum_{j < D} X[p, j] * W[c, j, o],    mv = [m; 1]
 *     W[c, j, o] = weight[(j * Cout + o) * Cm + c]  (c < Cm),   bias[j * Cout + o]  (c = Cm)
 *
 * X is the implicit im2col of the zero-padded features (gathered while loading tiles). Both kernels tile pixels x
 * output channels and stream the window dimension through shared memory; the contraction with mv happens on the
 * accumulators, so nothing but the output is written to global memory.
 */
#include "dynamicFilterKernel.cuh"

#include <cuda_fp16.h>
#include <mma.h>

// tests/kernel_emulation runs these kernels on the CPU (MADF_EMULATE): it provides dynamic shared memory, the
// barriers and WMMA itself, and launches the kernels without the <<<>>> launch functions at the end of this file.
#ifndef MADF_DYNAMIC_SHARED
#define MADF_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

namespace
{

struct Geometry
{
    int32_t n, cin, h, w, cm, cout, ho, wo, k, stride, pad;
    int32_t window;   // D = Cin * k * k
    int32_t howo;     // Ho * Wo
    int64_t pixels;   // N * Ho * Wo
};

__device__ __forceinline__ float toFloat(float v) { return v; }
__device__ __forceinline__ float toFloat(__half v) { return __half2float(v); }
template <typename T> __device__ __forceinline__ T fromFloat(float v);
template <> __device__ __forceinline__ float fromFloat<float>(float v) { return v; }
template <> __device__ __forceinline__ __half fromFloat<__half>(float v) { return __float2half_rn(v); }

// X[p, j]: features at window element j of output pixel p, zero outside the image (the op's zero padding).
template <typename T>
__device__ __forceinline__ T loadWindow(Geometry const& g, T const* x, int64_t p, int32_t j)
{
    if (p >= g.pixels || j >= g.window)
        return fromFloat<T>(0.0f);
    int32_t const n = static_cast<int32_t>(p / g.howo);
    int32_t const pix = static_cast<int32_t>(p - static_cast<int64_t>(n) * g.howo);
    int32_t const oy = pix / g.wo, ox = pix - oy * g.wo;
    int32_t const kk = g.k * g.k;
    int32_t const ci = j / kk, r = j - ci * kk;
    int32_t const ky = r / g.k, kx = r - ky * g.k;
    int32_t const iy = oy * g.stride - g.pad + ky, ix = ox * g.stride - g.pad + kx;
    if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w)
        return fromFloat<T>(0.0f);
    return x[((static_cast<int64_t>(n) * g.cin + ci) * g.h + iy) * g.w + ix];
}

// W[c, j, o] read in place from the official kernel-generator layout; zero outside (partial tiles).
template <typename T>
__device__ __forceinline__ T loadFilter(Geometry const& g, T const* weight, T const* bias, int32_t c, int32_t j, int32_t o)
{
    if (j >= g.window || o >= g.cout)
        return fromFloat<T>(0.0f);
    int64_t const d = static_cast<int64_t>(j) * g.cout + o;
    return c < g.cm ? weight[d * g.cm + c] : bias[d];
}

// mv[p, c] = [m; 1]
template <typename T>
__device__ __forceinline__ float loadMask(Geometry const& g, T const* m, int64_t p, int32_t c)
{
    if (p >= g.pixels)
        return 0.0f;
    if (c == g.cm)
        return 1.0f;
    int32_t const n = static_cast<int32_t>(p / g.howo);
    int32_t const pix = static_cast<int32_t>(p - static_cast<int64_t>(n) * g.howo);
    return toFloat(m[(static_cast<int64_t>(n) * g.cm + c) * g.howo + pix]);
}

template <typename T>
__device__ __forceinline__ void storeOutput(Geometry const& g, T* y, int64_t p, int32_t o, float v)
{
    if (p >= g.pixels || o >= g.cout)
        return;
    int32_t const n = static_cast<int32_t>(p / g.howo);
    int32_t const pix = static_cast<int32_t>(p - static_cast<int64_t>(n) * g.howo);
    y[(static_cast<int64_t>(n) * g.cout + o) * g.howo + pix] = fromFloat<T>(v);
}

// ---- SIMT: any shape, FP32 math. Block tile 64 pixels x 16 channels, 2x2 outputs per thread. ----------------------
constexpr int kSimtPixels = 64, kSimtChannels = 16, kSimtDepth = 8, kSimtTP = 2, kSimtTO = 2;
constexpr int kSimtThreads = (kSimtPixels / kSimtTP) * (kSimtChannels / kSimtTO);   // 256

template <typename T>
__global__ void __launch_bounds__(kSimtThreads) simtKernel(Geometry g, T const* x, T const* m, T const* weight,
    T const* bias, T* y)
{
    MADF_DYNAMIC_SHARED(float, smem);
    int32_t const c1 = g.cm + 1;
    float* xs = smem;                              // [depth][pixels]
    float* ms = xs + kSimtDepth * kSimtPixels;     // [c1][pixels]
    float* ws = ms + c1 * kSimtPixels;             // [c1][depth][channels]

    int const tid = threadIdx.x;
    int64_t const p0 = static_cast<int64_t>(blockIdx.x) * kSimtPixels;
    int32_t const o0 = blockIdx.y * kSimtChannels;
    int const tp = (tid / (kSimtChannels / kSimtTO)) * kSimtTP;
    int const to = (tid % (kSimtChannels / kSimtTO)) * kSimtTO;

    for (int i = tid; i < c1 * kSimtPixels; i += kSimtThreads)
        ms[i] = loadMask(g, m, p0 + i % kSimtPixels, i / kSimtPixels);

    float acc[kSimtTP][kSimtTO] = {};
    for (int32_t j0 = 0; j0 < g.window; j0 += kSimtDepth)
    {
        __syncthreads();   // the previous tile is consumed (and ms is written before the first use)
        for (int i = tid; i < kSimtDepth * kSimtPixels; i += kSimtThreads)
            xs[i] = toFloat(loadWindow(g, x, p0 + i % kSimtPixels, j0 + i / kSimtPixels));
        for (int i = tid; i < c1 * kSimtDepth * kSimtChannels; i += kSimtThreads)
        {
            // c fastest: consecutive threads read consecutive weight elements
            int const c = i % c1, rest = i / c1, o = rest % kSimtChannels, jj = rest / kSimtChannels;
            ws[(c * kSimtDepth + jj) * kSimtChannels + o] = toFloat(loadFilter(g, weight, bias, c, j0 + jj, o0 + o));
        }
        __syncthreads();
        for (int c = 0; c < c1; ++c)
        {
            float part[kSimtTP][kSimtTO] = {};
#pragma unroll
            for (int jj = 0; jj < kSimtDepth; ++jj)
            {
#pragma unroll
                for (int a = 0; a < kSimtTP; ++a)
#pragma unroll
                    for (int b = 0; b < kSimtTO; ++b)
                        part[a][b] += xs[jj * kSimtPixels + tp + a] * ws[(c * kSimtDepth + jj) * kSimtChannels + to + b];
            }
            // the contraction with [m; 1], applied to this depth slice (it is linear, so slices add up)
#pragma unroll
            for (int a = 0; a < kSimtTP; ++a)
#pragma unroll
                for (int b = 0; b < kSimtTO; ++b)
                    acc[a][b] += ms[c * kSimtPixels + tp + a] * part[a][b];
        }
    }
#pragma unroll
    for (int a = 0; a < kSimtTP; ++a)
#pragma unroll
        for (int b = 0; b < kSimtTO; ++b)
            storeOutput(g, y, p0 + tp + a, o0 + to + b, acc[a][b]);
}

// ---- Tensor cores: FP16 in, FP32 accumulate. Block 8 warps x 16 pixels, 16 channels; one accumulator per c. -------
constexpr int kTcWarps = 8, kTcPixels = 16 * kTcWarps, kTcChannels = 16, kTcDepth = 16, kTcMaxC1 = 17;
constexpr int kTcLdX = kTcDepth + 8, kTcLdW = kTcChannels + 8;   // padded rows (multiples of 8 halves) spread banks

__global__ void __launch_bounds__(32 * kTcWarps) tensorCoreKernel(Geometry g, __half const* x, __half const* m,
    __half const* weight, __half const* bias, __half* y)
{
#if defined(MADF_EMULATE) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700)
    using namespace nvcuda;
    __shared__ __align__(32) __half xs[kTcPixels * kTcLdX];            // [pixel][depth]
    __shared__ __align__(32) __half ws[kTcMaxC1 * kTcDepth * kTcLdW];  // [c][depth][channel]
    __shared__ __align__(32) float cs[kTcWarps * 16 * 16];             // per-warp accumulator scratch
    __shared__ float ms[kTcMaxC1 * kTcPixels];                         // [c][pixel]

    int32_t const c1 = g.cm + 1;
    int const tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    int64_t const p0 = static_cast<int64_t>(blockIdx.x) * kTcPixels;
    int32_t const o0 = blockIdx.y * kTcChannels;

    for (int i = tid; i < c1 * kTcPixels; i += 32 * kTcWarps)
        ms[i] = loadMask(g, m, p0 + i % kTcPixels, i / kTcPixels);

    // One 16x16 accumulator per c: the GEMM result Y[p, (c, o)] stays in registers until the epilogue contracts it.
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kTcMaxC1];
#pragma unroll
    for (int c = 0; c < kTcMaxC1; ++c)
        wmma::fill_fragment(acc[c], 0.0f);

    for (int32_t j0 = 0; j0 < g.window; j0 += kTcDepth)
    {
        __syncthreads();
        for (int i = tid; i < kTcPixels * kTcDepth; i += 32 * kTcWarps)
        {
            int const r = i / kTcDepth, jj = i % kTcDepth;
            xs[r * kTcLdX + jj] = loadWindow(g, x, p0 + r, j0 + jj);
        }
        for (int i = tid; i < c1 * kTcDepth * kTcChannels; i += 32 * kTcWarps)
        {
            int const c = i % c1, rest = i / c1, o = rest % kTcChannels, jj = rest / kTcChannels;
            ws[(c * kTcDepth + jj) * kTcLdW + o] = loadFilter(g, weight, bias, c, j0 + jj, o0 + o);
        }
        __syncthreads();
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
        wmma::load_matrix_sync(a, xs + warp * 16 * kTcLdX, kTcLdX);
#pragma unroll
        for (int c = 0; c < kTcMaxC1; ++c)
        {
            if (c < c1)
            {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b;
                wmma::load_matrix_sync(b, ws + c * kTcDepth * kTcLdW, kTcLdW);
                wmma::mma_sync(acc[c], a, b, acc[c]);
            }
        }
    }

    // Epilogue: y[p, o] = sum_c mv[p, c] * Y[p, (c, o)]. Lane e-mapping keeps 16 consecutive pixels per half-warp,
    // so stores to NCHW are coalesced; the scratch is column-major so those reads are conflict-free.
    float* scratch = cs + warp * 256;
    float out[8] = {};
#pragma unroll
    for (int c = 0; c < kTcMaxC1; ++c)
    {
        if (c < c1)
        {
            wmma::store_matrix_sync(scratch, acc[c], 16, wmma::mem_col_major);
            __syncwarp();
#pragma unroll
            for (int i = 0; i < 8; ++i)
            {
                int const e = i * 32 + lane, r = e & 15, o = e >> 4;
                out[i] += ms[c * kTcPixels + warp * 16 + r] * scratch[o * 16 + r];
            }
            __syncwarp();
        }
    }
#pragma unroll
    for (int i = 0; i < 8; ++i)
    {
        int const e = i * 32 + lane, r = e & 15, o = e >> 4;
        storeOutput(g, y, p0 + warp * 16 + r, o0 + o, out[i]);
    }
#endif
}

Geometry geometry(madfDynamicFilterShape const& s)
{
    Geometry g{};
    g.n = s.batch;
    g.cin = s.inChannels;
    g.h = s.height;
    g.w = s.width;
    g.cm = s.maskChannels;
    g.cout = s.outChannels;
    g.k = s.kernelSize;
    g.stride = s.stride;
    g.pad = s.padding;
    g.ho = madfDynamicFilterOutputSize(s.height, s.kernelSize, s.stride, s.padding);
    g.wo = madfDynamicFilterOutputSize(s.width, s.kernelSize, s.stride, s.padding);
    g.window = s.inChannels * s.kernelSize * s.kernelSize;
    g.howo = g.ho * g.wo;
    g.pixels = static_cast<int64_t>(g.n) * g.howo;
    return g;
}

int ceilDiv(int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); }

// One block per tile of pixels x output channels; the CPU emulation launches the same grids.
dim3 simtGrid(Geometry const& g) { return dim3(ceilDiv(g.pixels, kSimtPixels), ceilDiv(g.cout, kSimtChannels)); }
dim3 tensorCoreGrid(Geometry const& g) { return dim3(ceilDiv(g.pixels, kTcPixels), ceilDiv(g.cout, kTcChannels)); }

} // namespace

extern "C" int32_t madfDynamicFilterOutputSize(int32_t in, int32_t kernelSize, int32_t stride, int32_t padding)
{
    if (stride <= 0 || in + 2 * padding < kernelSize)
        return 0;
    return (in + 2 * padding - kernelSize) / stride + 1;
}

extern "C" const char* madfDynamicFilterCheck(const madfDynamicFilterShape* s)
{
    if (s == nullptr)
        return "MADFDynamicFilter: no shape given";
    if (s->kernelSize <= 0 || s->stride <= 0 || s->padding < 0)
        return "MADFDynamicFilter: kernel_size and stride must be positive and padding non-negative";
    if (s->batch < 0 || s->inChannels <= 0 || s->height <= 0 || s->width <= 0 || s->maskChannels <= 0
        || s->outChannels <= 0)
        return "MADFDynamicFilter: channels and sizes must be positive";
    if (madfDynamicFilterOutputSize(s->height, s->kernelSize, s->stride, s->padding) <= 0
        || madfDynamicFilterOutputSize(s->width, s->kernelSize, s->stride, s->padding) <= 0)
        return "MADFDynamicFilter: the image is smaller than one window (kernel_size > size + 2 * padding)";
    if (static_cast<int64_t>(s->batch) * s->height * s->width * s->inChannels > (int64_t{1} << 31)
        || static_cast<int64_t>(s->inChannels) * s->kernelSize * s->kernelSize * s->outChannels * s->maskChannels
            > (int64_t{1} << 31))
        return "MADFDynamicFilter: tensor too large for 32-bit per-item indexing; split the batch";
    return nullptr;
}

extern "C" size_t madfDynamicFilterSimtSharedBytes(int32_t maskChannels)
{
    size_t const c1 = static_cast<size_t>(maskChannels) + 1;
    return sizeof(float) * (kSimtDepth * kSimtPixels + c1 * kSimtPixels + c1 * kSimtDepth * kSimtChannels);
}

namespace
{
// The tensor-core kernel takes FP16 data, at most kTcMaxC1 - 1 mask channels, and sm_70 or newer.
madfAlgo selectAlgo(madfDynamicFilterShape const* s, madfDType dtype, madfAlgo requested, int ccMajor)
{
    if (requested == MADF_ALGO_SIMT || dtype != MADF_FLOAT16 || s == nullptr || s->maskChannels + 1 > kTcMaxC1
        || ccMajor < 7)
        return MADF_ALGO_SIMT;
    return MADF_ALGO_TENSOR_CORE;
}

bool validArguments(madfDynamicFilterShape const* shape, madfDType dtype)
{
    return madfDynamicFilterCheck(shape) == nullptr && (dtype == MADF_FLOAT32 || dtype == MADF_FLOAT16);
}
} // namespace

// Host code that talks to the CUDA runtime (device queries, launches); the CPU emulation has its own launcher.
#ifndef MADF_EMULATE
namespace
{
template <typename T>
cudaError_t launchSimt(Geometry const& g, size_t smem, cudaStream_t stream, void const* x, void const* m,
    void const* weight, void const* bias, void* y)
{
    if (smem > 48 * 1024)   // large Cm: opt in to more than the default 48 KiB (fails cleanly if too big)
    {
        cudaError_t const e
            = cudaFuncSetAttribute(simtKernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
        if (e != cudaSuccess)
            return e;
    }
    simtKernel<T><<<simtGrid(g), kSimtThreads, smem, stream>>>(g, static_cast<T const*>(x), static_cast<T const*>(m),
        static_cast<T const*>(weight), static_cast<T const*>(bias), static_cast<T*>(y));
    return cudaGetLastError();
}
} // namespace

extern "C" madfAlgo madfDynamicFilterSelect(const madfDynamicFilterShape* s, madfDType dtype, madfAlgo requested)
{
    int device = 0, major = 0;
    if (cudaGetDevice(&device) != cudaSuccess
        || cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess)
        return MADF_ALGO_SIMT;
    return selectAlgo(s, dtype, requested, major);
}

extern "C" cudaError_t madfDynamicFilterForward(const madfDynamicFilterShape* shape, madfDType dtype, madfAlgo algo,
    const void* features, const void* maskFeatures, const void* weight, const void* bias, void* output,
    cudaStream_t stream)
{
    if (!validArguments(shape, dtype))
        return cudaErrorInvalidValue;
    Geometry const g = geometry(*shape);
    if (g.pixels == 0)
        return cudaSuccess;
    if (madfDynamicFilterSelect(shape, dtype, algo) == MADF_ALGO_TENSOR_CORE)
    {
        tensorCoreKernel<<<tensorCoreGrid(g), 32 * kTcWarps, 0, stream>>>(g, static_cast<__half const*>(features),
            static_cast<__half const*>(maskFeatures), static_cast<__half const*>(weight),
            static_cast<__half const*>(bias), static_cast<__half*>(output));
        return cudaGetLastError();
    }
    size_t const smem = madfDynamicFilterSimtSharedBytes(g.cm);
    if (dtype == MADF_FLOAT32)
        return launchSimt<float>(g, smem, stream, features, maskFeatures, weight, bias, output);
    return launchSimt<__half>(g, smem, stream, features, maskFeatures, weight, bias, output);
}
#endif
