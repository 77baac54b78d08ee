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

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <type_traits>
#include <utility>

// madf/csrc/emulation runs these kernels on the CPU (MADF_EMULATE): it provides dynamic shared memory, the
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
template <typename T>
__device__ __forceinline__ T fromFloat(float v);
template <>
__device__ __forceinline__ float fromFloat<float>(float v)
{
    return v;
}
template <>
__device__ __forceinline__ __half fromFloat<__half>(float v)
{
    return __float2half_rn(v);
}

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
__device__ __forceinline__ T loadFilter(
    Geometry const& g, T const* weight, T const* bias, int32_t c, int32_t j, int32_t o)
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
__global__ void __launch_bounds__(kSimtThreads)
    simtKernel(Geometry g, T const* x, T const* m, T const* weight, T const* bias, T* y)
{
    MADF_DYNAMIC_SHARED(float, simtShared);
    float* const smem = simtShared;   // (each kernel names its extern array differently: they must not clash)
    int32_t const c1 = g.cm + 1;
    float* xs = smem;                            // [depth][pixels]
    float* ms = xs + kSimtDepth * kSimtPixels;   // [c1][pixels]
    float* ws = ms + c1 * kSimtPixels;           // [c1][depth][channels]

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
                        part[a][b] +=
                            xs[jj * kSimtPixels + tp + a] * ws[(c * kSimtDepth + jj) * kSimtChannels + to + b];
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

// ---- Tensor cores: FP16 in, FP32 accumulate -------------------------------------------------------------------------
// An implicit GEMM: M = pixels (16 per warp), N = 16 output channels x 16 mask slots + 16 bias columns (17 WMMA
// accumulators per warp), K = the window in stages of 32. B column o*16 + c holds W[c, j, o] (mask channels padded to
// 16), column 256 + o the bias: for the official Cm = 16 a row of B is one contiguous run of the generator's weight,
// so it streams with 16-byte cp.async straight into shared memory. A (the im2col window) is gathered through a
// per-block table of window offsets (no divisions in the loop) into registers one stage ahead, so global latency
// hides behind the current stage's MMAs; one barrier per stage.
constexpr int kTcChannels = 16, kTcMaskSlots = 16, kTcFrags = kTcChannels + 1, kTcMaxC1 = kTcMaskSlots + 1;
constexpr int kTcCols = 16 * kTcFrags;   // 272
constexpr int kTcDepth = 32;
constexpr int kTcLdB = kTcCols + 8;      // padded rows (16-byte multiples) spread banks
constexpr int kTcChunks = kTcCols / 8;   // 16-byte chunks per B row (34)

// One block of `Warps` warps covers 16 * Warps pixels. Wide blocks read each B tile for more pixels; narrow ones make
// more blocks, which the small levels need to fill the GPU (tensorCoreWarps picks per call).
template <int Warps>
struct TcTile
{
    static constexpr int threads = 32 * Warps, pixels = 16 * Warps;
    static constexpr int ldA = pixels + 8;
    static constexpr int rowsPerPass = threads / pixels;    // 2: A rows each thread gathers are this far apart
    static constexpr int gather = kTcDepth / rowsPerPass;   // A elements per thread per stage
    // dynamic shared memory: two stages of A and B, the mask tile, and the window table
    static constexpr size_t sharedBytes(int32_t window)
    {
        return sizeof(__half) * 2 * kTcDepth * (ldA + kTcLdB) + sizeof(float) * kTcMaskSlots * pixels
            + sizeof(int2) * static_cast<size_t>(window);
    }
};
constexpr int kTcWidestWarps = 8;

// cp.async: 16 bytes global -> shared, zero-filled when !valid. Under MADF_EMULATE the copy lands only at the
// wait that covers its group (and the destination holds garbage until then), so a read before the wait, or a
// missing barrier after it, gives a wrong answer there as it would on a GPU.
__device__ __forceinline__ void copyAsync16(void* dst, void const* src, bool valid)
{
#if defined(MADF_EMULATE)
    emulate::copyAsync16(dst, src, valid);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    unsigned const s = static_cast<unsigned>(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(valid ? 16 : 0));
#else
    *static_cast<uint4*>(dst) = valid ? *static_cast<uint4 const*>(src) : make_uint4(0, 0, 0, 0);
#endif
}

__device__ __forceinline__ void copyAsyncCommit()
{
#if defined(MADF_EMULATE)
    emulate::copyAsyncCommit();
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}

// Wait until at most `Pending` of this thread's committed copy groups are still in flight.
template <int Pending>
__device__ __forceinline__ void copyAsyncWait()
{
#if defined(MADF_EMULATE)
    emulate::copyAsyncWait(Pending);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending) : "memory");
#endif
}

__device__ __forceinline__ void copyAsyncWaitAll() { copyAsyncWait<0>(); }

// The epilogue of both tensor-core kernels: y[p, o] = sum_c m[p, c] * acc_o[p, c] + acc_bias[p, o], through a per-warp
// scratch of 256 floats at scratch + warp * 256 (B's space, free once the main loop is done). Lane (r, h) contracts the
// fragments of output channels o = 2i + h for pixel r: 16 consecutive pixels per half-warp, so the NCHW stores are
// coalesced; the scratch is column-major so its reads are conflict-free. With `partial` the FP32 sums go there (a
// split-K tile, NCHW like y) instead of y.
template <int Pixels, typename Accumulator>
__device__ __forceinline__ void storeContracted(Geometry const& g, Accumulator (&acc)[kTcFrags], float const* ms,
    float* scratchBase, int64_t p0, int32_t o0, __half* y, float* partial)
{
#if defined(MADF_EMULATE) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700)
    using namespace nvcuda;
    int const warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float* const scratch = scratchBase + warp * 256;
    int const r = lane & 15, h = lane >> 4;
    float out[kTcChannels / 2];
#pragma unroll
    for (int f = 0; f < kTcChannels; ++f)
    {
        wmma::store_matrix_sync(scratch, acc[f], 16, wmma::mem_col_major);
        __syncwarp();
        if ((f & 1) == h)
        {
            float sum = 0.0f;
#pragma unroll
            for (int c = 0; c < kTcMaskSlots; ++c)
                sum += ms[c * Pixels + warp * 16 + r] * scratch[c * 16 + r];
            out[f / 2] = sum;
        }
        __syncwarp();
    }
    wmma::store_matrix_sync(scratch, acc[kTcChannels], 16, wmma::mem_col_major);
    __syncwarp();
    int64_t const q = p0 + warp * 16 + r;
    if (q >= g.pixels)
        return;
    int32_t const n = static_cast<int32_t>(q / g.howo), pix = static_cast<int32_t>(q - int64_t{n} * g.howo);
    int64_t const base = static_cast<int64_t>(n) * g.cout * g.howo + pix;
#pragma unroll
    for (int i = 0; i < kTcChannels / 2; ++i)
    {
        int32_t const o = o0 + 2 * i + h;
        if (o >= g.cout)
            continue;
        float const v = out[i] + scratch[(2 * i + h) * 16 + r];
        if (partial != nullptr)
            partial[base + static_cast<int64_t>(o) * g.howo] = v;
        else
            y[base + static_cast<int64_t>(o) * g.howo] = fromFloat<__half>(v);
    }
#endif
}

// Whether input row iy, column ix lies inside the image (outside: the op's zero padding).
__device__ __forceinline__ bool inImage(Geometry const& g, int32_t iy, int32_t ix)
{
    return static_cast<uint32_t>(iy) < static_cast<uint32_t>(g.h)
        && static_cast<uint32_t>(ix) < static_cast<uint32_t>(g.w);
}

// One stage of B (rows j0 .. j0 + kTcDepth) into bs. vectorB: Cm == 16, Cout % 16 == 0 and 16-byte aligned pointers.
template <int Threads>
__device__ __forceinline__ void loadFilterStage(
    Geometry const& g, __half const* weight, __half const* bias, bool vectorB, int32_t j0, int32_t o0, __half* bs)
{
    if (vectorB)
    {
        for (int i = threadIdx.x; i < kTcDepth * kTcChunks; i += Threads)
        {
            int const row = i / kTcChunks, chunk = i - row * kTcChunks;
            int32_t const j = j0 + row;
            bool const valid = j < g.window;
            int64_t const d = static_cast<int64_t>(valid ? j : 0) * g.cout + o0;
            __half const* src = chunk < 2 * kTcChannels ? weight + d * kTcMaskSlots + chunk * 8
                                                        : bias + d + (chunk - 2 * kTcChannels) * 8;
            copyAsync16(bs + row * kTcLdB + chunk * 8, src, valid);
        }
        copyAsyncCommit();
        return;
    }
    for (int i = threadIdx.x; i < kTcDepth * kTcCols; i += Threads)
    {
        int const row = i / kTcCols, col = i - row * kTcCols;
        bool const isBias = col >= kTcChannels * kTcMaskSlots;
        int32_t const o = isBias ? col - kTcChannels * kTcMaskSlots : col / kTcMaskSlots;
        int32_t const c = isBias ? g.cm : col % kTcMaskSlots;   // slots past Cm stay zero
        bs[row * kTcLdB + col] =
            isBias || c < g.cm ? loadFilter(g, weight, bias, c, j0 + row, o0 + o) : fromFloat<__half>(0.0f);
    }
}

template <int Warps>
__global__ void __launch_bounds__(32 * Warps, 1) tensorCoreKernel(
    Geometry g, __half const* x, __half const* m, __half const* weight, __half const* bias, __half* y, bool vectorB)
{
#if defined(MADF_EMULATE) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700)
    using namespace nvcuda;
    using Tile = TcTile<Warps>;
    MADF_DYNAMIC_SHARED(uint4, tcShared);   // uint4: 16-byte aligned for cp.async
    unsigned char* const smem = reinterpret_cast<unsigned char*>(tcShared);
    __half* const bsBase = reinterpret_cast<__half*>(smem);   // [stage][depth][kTcLdB]
    __half* const asBase = bsBase + 2 * kTcDepth * kTcLdB;    // [stage][depth][Tile::ldA] (A column-major)
    float* const ms = reinterpret_cast<float*>(asBase + 2 * kTcDepth * Tile::ldA);   // [mask slot][pixel]
    int2* const table = reinterpret_cast<int2*>(ms + kTcMaskSlots * Tile::pixels);   // window j -> (offset, ky|kx)

    int const tid = threadIdx.x, warp = tid / 32;
    int64_t const p0 = static_cast<int64_t>(blockIdx.x) * Tile::pixels;
    int32_t const o0 = blockIdx.y * kTcChannels;

    int32_t const kk = g.k * g.k, plane = g.h * g.w;
    for (int32_t j = tid; j < g.window; j += Tile::threads)
    {
        int32_t const ci = j / kk, r = j - ci * kk, ky = r / g.k, kx = r - ky * g.k;
        table[j] = make_int2(ci * plane + ky * g.w + kx, (ky << 16) | kx);
    }
    for (int i = tid; i < kTcMaskSlots * Tile::pixels; i += Tile::threads)
    {
        int const c = i / Tile::pixels;
        ms[i] = c < g.cm ? loadMask(g, m, p0 + i % Tile::pixels, c) : 0.0f;
    }

    // This thread gathers A for pixel `row` at window rows `first + Tile::rowsPerPass * i` of every stage.
    int const row = tid % Tile::pixels, first = tid / Tile::pixels;
    int64_t const p = p0 + row;
    bool const pixelValid = p < g.pixels;
    int32_t iy0 = 0, ix0 = 0;
    int64_t pixelBase = 0;
    if (pixelValid)
    {
        int32_t const n = static_cast<int32_t>(p / g.howo),
                      pix = static_cast<int32_t>(p - static_cast<int64_t>(n) * g.howo);
        int32_t const oy = pix / g.wo, ox = pix - oy * g.wo;
        iy0 = oy * g.stride - g.pad;
        ix0 = ox * g.stride - g.pad;
        pixelBase = static_cast<int64_t>(n) * g.cin * plane + static_cast<int64_t>(iy0) * g.w + ix0;
    }
    __half gathered[Tile::gather];
    auto gather = [&](int32_t j0) {
#pragma unroll
        for (int i = 0; i < Tile::gather; ++i)
        {
            int32_t const j = j0 + first + Tile::rowsPerPass * i;
            bool valid = pixelValid && j < g.window;
            int2 const t = table[valid ? j : 0];
            int32_t const iy = iy0 + (t.y >> 16), ix = ix0 + (t.y & 0xffff);
            valid = valid && static_cast<uint32_t>(iy) < static_cast<uint32_t>(g.h)
                && static_cast<uint32_t>(ix) < static_cast<uint32_t>(g.w);
            gathered[i] = valid ? x[pixelBase + t.x] : fromFloat<__half>(0.0f);
        }
    };
    auto storeGathered = [&](__half* as) {
#pragma unroll
        for (int i = 0; i < Tile::gather; ++i)
            as[(first + Tile::rowsPerPass * i) * Tile::ldA + row] = gathered[i];
    };

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kTcFrags];
#pragma unroll
    for (int f = 0; f < kTcFrags; ++f)
        wmma::fill_fragment(acc[f], 0.0f);

    __syncthreads();   // the window table is written
    int32_t const stages = (g.window + kTcDepth - 1) / kTcDepth;
    loadFilterStage<Tile::threads>(g, weight, bias, vectorB, 0, o0, bsBase);
    gather(0);
    storeGathered(asBase);
    copyAsyncWaitAll();
    __syncthreads();
    for (int32_t s = 0; s < stages; ++s)
    {
        int const cur = s & 1;
        bool const more = s + 1 < stages;
        if (more)   // next stage in flight while this one multiplies
        {
            loadFilterStage<Tile::threads>(
                g, weight, bias, vectorB, (s + 1) * kTcDepth, o0, bsBase + (cur ^ 1) * kTcDepth * kTcLdB);
            gather((s + 1) * kTcDepth);
        }
        __half const* as = asBase + cur * kTcDepth * Tile::ldA;
        __half const* bs = bsBase + cur * kTcDepth * kTcLdB;
#pragma unroll
        for (int k0 = 0; k0 < kTcDepth; k0 += 16)
        {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::col_major> a;
            wmma::load_matrix_sync(a, as + k0 * Tile::ldA + warp * 16, Tile::ldA);
#pragma unroll
            for (int f = 0; f < kTcFrags; ++f)
            {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b;
                wmma::load_matrix_sync(b, bs + k0 * kTcLdB + f * 16, kTcLdB);
                wmma::mma_sync(acc[f], a, b, acc[f]);
            }
        }
        if (more)
        {
            storeGathered(asBase + (cur ^ 1) * kTcDepth * Tile::ldA);
            copyAsyncWaitAll();
        }
        __syncthreads();
    }

    // B's space is free now: the epilogue's per-warp scratch
    storeContracted<Tile::pixels>(g, acc, ms, reinterpret_cast<float*>(bsBase), p0, o0, y, nullptr);
#endif
}

// ---- Tensor cores, round 2: the cheaper stage (PIPELINED) and split-K (SPLIT_K) ------------------------------------
// The same implicit GEMM and epilogue as tensorCoreKernel, with the per-stage address work taken out of the loop:
// - B (the generator's rows) streams as 16-byte cp.async whose source and destination are set once per thread and
//   advanced by one scalar per stage (needs vectorFilter: Cm == 16, Cout % 16 == 0);
// - the pipeline is kPipeStages deep: one wait_group(kPipeStages - 2) and one barrier per stage;
// - when Cin % 32 == 0 the window is walked tap-major, a stage being 32 channels at one tap (K = tap * Cin + ci; the
//   generator rows are read in that order in place, nothing permuted): one bounds check per pixel per stage, and with
//   NHWC features the A tile is four 16-byte cp.async per pixel. Else (levels 1-2) A is gathered through the window
//   table, as in round 1.
// Split-K: blockIdx.z takes stages [z * per, (z + 1) * per); because the contraction with [m; 1] is linear, each split
// contracts its own accumulators and writes only its 16 x 16 FP32 output tile per warp to the workspace;
// splitSumKernel adds the splits in a fixed order, so the result does not depend on scheduling.
constexpr int kPipeStages = 3;

enum class ASource
{
    Window,    // NCHW, window order j = ci * k * k + tap, gathered through the table
    TapNchw,   // NCHW, tap-major, gathered (strided channels) through registers
    TapNhwc    // NHWC, tap-major, 16-byte cp.async
};

template <int Warps, ASource Src>
struct PipeTile
{
    static constexpr int threads = 32 * Warps, pixels = 16 * Warps;
    static constexpr bool rowMajorA = Src == ASource::TapNhwc;   // [pixel][k] so 8 channels are one 16-byte run
    static constexpr int ldA = rowMajorA ? kTcDepth + 8 : pixels + 8;
    static constexpr int aStage = rowMajorA ? pixels * ldA : kTcDepth * ldA;   // halves
    static constexpr int bStage = kTcDepth * kTcLdB;
    static constexpr int rowsPerPass = threads / pixels;   // register gather: 2
    static constexpr int gather = kTcDepth / rowsPerPass;
    static constexpr int bCopies = kTcDepth / Warps;       // weight chunks per thread per stage: row tid/32 + Warps * t
    static constexpr int aCopies = pixels * 4 / threads;   // NHWC: 16-byte chunks per thread per stage (2)
    static constexpr size_t sharedBytes(int32_t window)
    {
        return sizeof(__half) * kPipeStages * (aStage + bStage) + sizeof(float) * kTcMaskSlots * pixels
            + (Src == ASource::Window ? sizeof(int2) * static_cast<size_t>(window) : 0);
    }
};

struct PipeArgs
{
    Geometry g;
    __half const *x, *m, *weight, *bias;
    __half* y;
    float* partial;           // split-K: [split][N][Cout][Ho][Wo] FP32; nullptr writes y
    int32_t stagesPerSplit;   // stages each blockIdx.z walks
};

// Stages of the window: 32 rows each, in window order, or (tap-major) Cin / 32 channel blocks per tap.
template <ASource Src>
__device__ __forceinline__ int32_t pipeStages(Geometry const& g)
{
    return Src == ASource::Window ? (g.window + kTcDepth - 1) / kTcDepth : g.k * g.k * (g.cin / kTcDepth);
}

template <int Warps, ASource Src>
__global__ void __launch_bounds__(32 * Warps, 1) pipelinedKernel(PipeArgs a)
{
#if defined(MADF_EMULATE) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700)
    using namespace nvcuda;
    using Tile = PipeTile<Warps, Src>;
    constexpr bool tap = Src != ASource::Window;
    Geometry const& g = a.g;
    MADF_DYNAMIC_SHARED(uint4, pipeShared);
    __half* const bsBase = reinterpret_cast<__half*>(pipeShared);                      // [stage][depth][kTcLdB]
    __half* const asBase = bsBase + kPipeStages * Tile::bStage;                        // [stage] A tile
    float* const ms = reinterpret_cast<float*>(asBase + kPipeStages * Tile::aStage);   // [mask slot][pixel]
    int2* const table = reinterpret_cast<int2*>(ms + kTcMaskSlots * Tile::pixels);     // Window only

    int const tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    int64_t const p0 = static_cast<int64_t>(blockIdx.x) * Tile::pixels;
    int32_t const o0 = blockIdx.y * kTcChannels;
    int32_t const kk = g.k * g.k, plane = g.h * g.w, cblocks = g.cin / kTcDepth;
    int32_t const sBegin = blockIdx.z * a.stagesPerSplit;
    int32_t const stages = pipeStages<Src>(g);
    int32_t const sEnd = sBegin + a.stagesPerSplit < stages ? sBegin + a.stagesPerSplit : stages;

    if (Src == ASource::Window)
        for (int32_t j = tid; j < g.window; j += Tile::threads)
        {
            int32_t const ci = j / kk, r = j - ci * kk, ky = r / g.k, kx = r - ky * g.k;
            table[j] = make_int2(ci * plane + ky * g.w + kx, (ky << 16) | kx);
        }
    for (int i = tid; i < kTcMaskSlots * Tile::pixels; i += Tile::threads)
    {
        int const c = i / Tile::pixels;
        ms[i] = c < g.cm ? loadMask(g, a.m, p0 + i % Tile::pixels, c) : 0.0f;
    }

    // Stage s: its first generator row j0 and (tap-major) its tap and channel block, from one division per stage.
    int32_t const rowStep = tap ? kk : 1;   // generator rows between consecutive K of a stage
    struct Stage
    {
        int32_t j0, ky, kx, channel;
    };
    auto stageOf = [&](int32_t s) {
        if constexpr (!tap)
            return Stage{s * kTcDepth, 0, 0, 0};
        int32_t const t = s / cblocks, channel = (s - t * cblocks) * kTcDepth, ky = t / g.k;
        return Stage{channel * kk + t, ky, t - ky * g.k, channel};
    };

    // B: this thread's weight chunk is row tid / 32 + Warps * t, 16 bytes at column (tid % 32) * 8 of the 512-byte
    // run of the 16 output channels' 16 mask slots; threads < 64 also copy one of the two bias chunks of a row.
    int32_t const rowElems = g.cout * kTcMaskSlots;
    int32_t const wRel = (warp * rowStep) * rowElems + o0 * kTcMaskSlots + lane * 8;
    int32_t const wStep = Warps * rowStep * rowElems;
    __half* const wDst = bsBase + warp * kTcLdB + lane * 8;
    int const bRow = tid / 2;
    int32_t const bRel = bRow * rowStep * g.cout + o0 + (tid % 2) * 8;
    __half* const bDst = bsBase + bRow * kTcLdB + kTcChannels * kTcMaskSlots + (tid % 2) * 8;

    // A, gathered (NCHW): pixel `row`, K rows first + rowsPerPass * i. NHWC: chunk (pixel tid/4 + 8 Warps t, tid%4).
    int const row = tid % Tile::pixels, first = tid / Tile::pixels;
    int32_t iy0[2], ix0[2], xRel[2];
    bool pixelValid[2];
    constexpr int pixelSlots = Src == ASource::TapNhwc ? Tile::aCopies : 1;
#pragma unroll
    for (int t = 0; t < pixelSlots; ++t)
    {
        int const pixel = Src == ASource::TapNhwc ? tid / 4 + 8 * Warps * t : row;
        int64_t const p = p0 + pixel;
        pixelValid[t] = p < g.pixels;
        iy0[t] = ix0[t] = xRel[t] = 0;
        if (pixelValid[t])
        {
            int32_t const n = static_cast<int32_t>(p / g.howo), pix = static_cast<int32_t>(p - int64_t{n} * g.howo);
            int32_t const oy = pix / g.wo, ox = pix - oy * g.wo;
            iy0[t] = oy * g.stride - g.pad;
            ix0[t] = ox * g.stride - g.pad;
            xRel[t] = Src == ASource::TapNhwc ? ((n * g.h + iy0[t]) * g.w + ix0[t]) * g.cin + (tid % 4) * 8
                                              : (n * g.cin + (tap ? first : 0)) * plane + iy0[t] * g.w + ix0[t];
        }
    }

    auto issue = [&](int32_t s, int buf) {   // stage s's B (and NHWC A) copies into buffer buf, as one group
        if (s < sEnd)
        {
            Stage const st = stageOf(s);
            int32_t const rowsLeft = tap ? kTcDepth : g.window - st.j0;   // the window's tail (window order only)
            __half const* const w = a.weight + static_cast<int64_t>(st.j0) * rowElems;
#pragma unroll
            for (int t = 0; t < Tile::bCopies; ++t)
            {
                bool const valid = warp + Warps * t < rowsLeft;   // a zero-filled row reads nothing: keep in bounds
                copyAsync16(
                    wDst + buf * Tile::bStage + t * Warps * kTcLdB, valid ? w + wRel + t * wStep : a.weight, valid);
            }
            if (tid < 2 * kTcDepth)
                copyAsync16(bDst + buf * Tile::bStage,
                    bRow < rowsLeft ? a.bias + static_cast<int64_t>(st.j0) * g.cout + bRel : a.bias, bRow < rowsLeft);
            if (Src == ASource::TapNhwc)
            {
                int32_t const off = (st.ky * g.w + st.kx) * g.cin + st.channel;
#pragma unroll
                for (int t = 0; t < pixelSlots; ++t)
                {
                    bool const valid = pixelValid[t] && inImage(g, iy0[t] + st.ky, ix0[t] + st.kx);
                    copyAsync16(asBase + buf * Tile::aStage + (tid / 4 + 8 * Warps * t) * Tile::ldA + (tid % 4) * 8,
                        valid ? a.x + xRel[t] + off : a.x, valid);
                }
            }
        }
        copyAsyncCommit();   // one group per stage, empty past the end: the wait below counts stages
    };

    __half gathered[Tile::gather];
    auto gather = [&](int32_t s) {
        Stage const st = stageOf(s);
        if constexpr (tap)
        {
            bool const valid = pixelValid[0] && inImage(g, iy0[0] + st.ky, ix0[0] + st.kx);
            __half const* src = a.x + xRel[0] + st.channel * plane + st.ky * g.w + st.kx;
#pragma unroll
            for (int i = 0; i < Tile::gather; ++i)
                gathered[i] = valid ? src[i * Tile::rowsPerPass * plane] : fromFloat<__half>(0.0f);
        }
        else
        {
#pragma unroll
            for (int i = 0; i < Tile::gather; ++i)
            {
                int32_t const j = st.j0 + first + Tile::rowsPerPass * i;
                bool valid = pixelValid[0] && j < g.window;
                int2 const t = table[valid ? j : 0];
                int32_t const iy = iy0[0] + (t.y >> 16), ix = ix0[0] + (t.y & 0xffff);
                valid = valid && static_cast<uint32_t>(iy) < static_cast<uint32_t>(g.h)
                    && static_cast<uint32_t>(ix) < static_cast<uint32_t>(g.w);
                gathered[i] = valid ? a.x[xRel[0] + t.x] : fromFloat<__half>(0.0f);
            }
        }
    };
    auto storeGathered = [&](int buf) {
        __half* const as = asBase + buf * Tile::aStage;
#pragma unroll
        for (int i = 0; i < Tile::gather; ++i)
            as[(first + Tile::rowsPerPass * i) * Tile::ldA + row] = gathered[i];
    };

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kTcFrags];
#pragma unroll
    for (int f = 0; f < kTcFrags; ++f)
        wmma::fill_fragment(acc[f], 0.0f);

    __syncthreads();   // the window table is written
    constexpr bool registerA = Src != ASource::TapNhwc;
    if (registerA && sBegin < sEnd)
    {
        gather(sBegin);
        storeGathered(0);
    }
#pragma unroll
    for (int i = 0; i < kPipeStages - 1; ++i)
        issue(sBegin + i, i);
    if (registerA && sBegin + 1 < sEnd)
        gather(sBegin + 1);

    for (int32_t s = sBegin; s < sEnd; ++s)
    {
        int const it = s - sBegin, buf = it % kPipeStages;
        copyAsyncWait<kPipeStages - 2>();   // stage s has landed (this thread's copies)
        __syncthreads();                    // everyone's copies; and stage s - 1 is consumed, so its buffer is free
        issue(s + kPipeStages - 1, (it + kPipeStages - 1) % kPipeStages);
        if (registerA && s + 1 < sEnd)
        {
            storeGathered((it + 1) % kPipeStages);   // read after the next barrier
            if (s + 2 < sEnd)
                gather(s + 2);   // in flight during this stage's MMAs
        }
        __half const* as = asBase + buf * Tile::aStage;
        __half const* bs = bsBase + buf * Tile::bStage;
#pragma unroll
        for (int k0 = 0; k0 < kTcDepth; k0 += 16)
        {
            using ALayout = std::conditional_t<Tile::rowMajorA, wmma::row_major, wmma::col_major>;
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, ALayout> fa;
            if (Tile::rowMajorA)
                wmma::load_matrix_sync(fa, as + warp * 16 * Tile::ldA + k0, Tile::ldA);
            else
                wmma::load_matrix_sync(fa, as + k0 * Tile::ldA + warp * 16, Tile::ldA);
#pragma unroll
            for (int f = 0; f < kTcFrags; ++f)
            {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> fb;
                wmma::load_matrix_sync(fb, bs + k0 * kTcLdB + f * 16, kTcLdB);
                wmma::mma_sync(acc[f], fa, fb, acc[f]);
            }
        }
    }
    copyAsyncWaitAll();   // the trailing (empty) groups; the scratch below reuses B's buffers
    __syncthreads();

    // a split writes its contracted FP32 tile to the workspace; unsplit, the output
    storeContracted<Tile::pixels>(g, acc, ms, reinterpret_cast<float*>(bsBase), p0, o0, a.y,
        a.partial != nullptr ? a.partial + blockIdx.z * g.pixels * g.cout : nullptr);
#endif
}

// y = sum over the splits of the partial outputs, in split order (deterministic), rounded to FP16 once.
constexpr int kSumThreads = 256;
__global__ void __launch_bounds__(kSumThreads)
    splitSumKernel(float const* partial, int32_t splits, int64_t count, __half* y)
{
    int64_t const i = static_cast<int64_t>(blockIdx.x) * kSumThreads + threadIdx.x;
    if (i >= count)
        return;
    float sum = 0.0f;
    for (int32_t s = 0; s < splits; ++s)
        sum += partial[s * count + i];
    y[i] = fromFloat<__half>(sum);
}

// The B tiles stream as 16-byte copies when each generator row is whole 16-byte runs: official Cm, full channel tiles.
bool vectorFilter(Geometry const& g, void const* weight, void const* bias)
{
    return g.cm == kTcMaskSlots && g.cout % kTcChannels == 0 && reinterpret_cast<uintptr_t>(weight) % 16 == 0
        && reinterpret_cast<uintptr_t>(bias) % 16 == 0;
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
dim3 tensorCoreGrid(Geometry const& g, int warps)
{
    return dim3(ceilDiv(g.pixels, 16 * warps), ceilDiv(g.cout, kTcChannels));
}

// The tensor-core kernel's arguments, as both launchers (CUDA here, the CPU emulation in tests) pass them.
struct TcArgs
{
    Geometry g;
    __half const *x, *m, *weight, *bias;
    __half* y;
    bool vectorB;
};

TcArgs tensorCoreArgs(Geometry const& g, void const* x, void const* m, void const* weight, void const* bias, void* y)
{
    return TcArgs{g, static_cast<__half const*>(x), static_cast<__half const*>(m), static_cast<__half const*>(weight),
        static_cast<__half const*>(bias), static_cast<__half*>(y), vectorFilter(g, weight, bias)};
}

// launch(std::integral_constant<int, W>{}) for the block width W of 8, 4 or 2 warps (one instantiation each).
template <typename Launch>
auto withWarps(int warps, Launch&& launch)
{
    if (warps == 8)
        return launch(std::integral_constant<int, 8>{});
    if (warps == 4)
        return launch(std::integral_constant<int, 4>{});
    return launch(std::integral_constant<int, 2>{});
}

// The widest block whose grid still covers every SM once; else the narrowest (tiny levels, batch 1).
int tensorCoreWarps(Geometry const& g, int multiprocessors)
{
    for (int warps : {8, 4})
    {
        dim3 const grid = tensorCoreGrid(g, warps);
        if (static_cast<int64_t>(grid.x) * grid.y >= multiprocessors)
            return warps;
    }
    return 2;
}

// launch(std::integral_constant<ASource, S>{}) for the pipelined kernel's A source (one instantiation each).
template <typename Launch>
auto withSource(ASource source, Launch&& launch)
{
    if (source == ASource::TapNhwc)
        return launch(std::integral_constant<ASource, ASource::TapNhwc>{});
    if (source == ASource::TapNchw)
        return launch(std::integral_constant<ASource, ASource::TapNchw>{});
    return launch(std::integral_constant<ASource, ASource::Window>{});
}

size_t pipeSharedBytes(int warps, ASource source, int32_t window)
{
    return withWarps(warps, [&](auto w) {
        return withSource(
            source, [&](auto s) { return PipeTile<decltype(w)::value, decltype(s)::value>::sharedBytes(window); });
    });
}

// What one call runs: the kernel (algo; SPLIT_K with splits == 1 runs as PIPELINED), its block width, the pipelined
// kernel's A source and the split of the window's stages over blockIdx.z.
struct Plan
{
    madfAlgo algo{MADF_ALGO_AUTO};   // AUTO: nothing can run this call
    int warps{0};
    ASource source{ASource::Window};
    int32_t splits{1}, stagesPerSplit{0};
};

constexpr size_t kUnbounded = ~size_t{0};

// The one place that decides what a tactic runs on a shape and a device (Select, WorkspaceSize and the launch all ask
// here). `workspaceBytes` bounds the split count of SPLIT_K; `warps` (0: by the SM count) forces a block width.
Plan planCall(madfDynamicFilterShape const& s, madfDType dtype, madfTactic requested, int ccMajor, int multiprocessors,
    size_t sharedLimit, size_t workspaceBytes, int warps = 0)
{
    Geometry const g = geometry(s);
    Plan plan;
    bool const nhwc = s.featuresLayout == MADF_LAYOUT_NHWC;
    bool const tensorCores = dtype == MADF_FLOAT16 && s.maskChannels + 1 <= kTcMaxC1 && ccMajor >= 7
        && TcTile<kTcWidestWarps>::sharedBytes(g.window) <= sharedLimit;
    plan.warps = warps != 0 ? warps : tensorCoreWarps(g, multiprocessors);
    plan.source = s.inChannels % kTcDepth != 0 ? ASource::Window : nhwc ? ASource::TapNhwc : ASource::TapNchw;
    bool const pipelined = tensorCores && s.maskChannels == kTcMaskSlots && s.outChannels % kTcChannels == 0
        && (!nhwc || plan.source == ASource::TapNhwc)
        && pipeSharedBytes(kTcWidestWarps, plan.source, g.window) <= sharedLimit;
    madfAlgo algo = MADF_TACTIC_ALGO(requested);
    if (nhwc)   // only the pipelined kernel reads NHWC
    {
        if (!pipelined)
            return Plan{};
        algo = algo == MADF_ALGO_SPLIT_K ? algo : MADF_ALGO_PIPELINED;
    }
    else if (algo == MADF_ALGO_AUTO)
        algo =
            tensorCores ? MADF_ALGO_TENSOR_CORE : MADF_ALGO_SIMT;   // today's choice, until a GPU table says otherwise
    if ((algo == MADF_ALGO_PIPELINED || algo == MADF_ALGO_SPLIT_K) && !pipelined)
        algo = MADF_ALGO_TENSOR_CORE;
    if (algo == MADF_ALGO_TENSOR_CORE && !tensorCores)
        algo = MADF_ALGO_SIMT;
    plan.algo = algo;
    if (algo != MADF_ALGO_SPLIT_K)
        return plan;

    // At least ~one CTA per SM and at least two stages per split; the last split takes the tail.
    int32_t const stages = plan.source == ASource::Window ? ceilDiv(g.window, kTcDepth)
                                                          : s.kernelSize * s.kernelSize * (s.inChannels / kTcDepth);
    dim3 const grid = tensorCoreGrid(g, plan.warps);
    int64_t const ctas = static_cast<int64_t>(grid.x) * grid.y;
    int64_t splits = MADF_TACTIC_SPLITS(requested);
    if (splits == 0)
        splits = ctas >= multiprocessors ? 1 : (multiprocessors + ctas - 1) / ctas;
    splits = std::min<int64_t>({splits, MADF_MAX_SPLITS, stages / 2});
    size_t const perSplitBytes = sizeof(float) * static_cast<size_t>(g.pixels) * static_cast<size_t>(g.cout);
    if (splits > 1 && workspaceBytes != kUnbounded)
        splits = std::min<int64_t>(splits, static_cast<int64_t>(workspaceBytes / perSplitBytes));
    splits = std::max<int64_t>(splits, 1);
    plan.stagesPerSplit = static_cast<int32_t>((stages + splits - 1) / splits);
    plan.splits = (stages + plan.stagesPerSplit - 1) / plan.stagesPerSplit;   // no empty split
    return plan;
}

madfTactic tacticOf(Plan const& plan)
{
    return MADF_TACTIC(plan.algo, plan.algo == MADF_ALGO_SPLIT_K ? plan.splits : 0);
}

size_t workspaceOf(Geometry const& g, Plan const& plan)
{
    return plan.splits > 1 ? sizeof(float) * plan.splits * static_cast<size_t>(g.pixels) * g.cout : 0;
}

// The pipelined kernel reads B (and NHWC A) as 16-byte copies.
bool pipelineAligned(Geometry const& g, Plan const& plan, void const* x, void const* weight, void const* bias)
{
    return vectorFilter(g, weight, bias)
        && (plan.source != ASource::TapNhwc || (reinterpret_cast<uintptr_t>(x) % 16 == 0 && g.cin % 8 == 0));
}

// Runs one call on `launch(kernel, grid, block, sharedBytes, args...)`: the CUDA launcher below, or the CPU
// emulation's (madf/csrc/emulation), so both run the same plans, grids and arguments.
template <typename Launcher>
cudaError_t forwardWith(Launcher&& launch, madfDynamicFilterShape const& s, madfDType dtype, Plan plan, void const* x,
    void const* m, void const* weight, void const* bias, void* y, void* workspace)
{
    Geometry const g = geometry(s);
    if (plan.algo == MADF_ALGO_AUTO)
        return cudaErrorInvalidValue;   // NHWC features no variant can read
    if ((plan.algo == MADF_ALGO_PIPELINED || plan.algo == MADF_ALGO_SPLIT_K)
        && !pipelineAligned(g, plan, x, weight, bias))
    {
        if (plan.source == ASource::TapNhwc)
            return cudaErrorInvalidValue;
        plan.algo = MADF_ALGO_TENSOR_CORE;   // unaligned generator tensors: round 1 has a scalar path
    }
    if (plan.algo == MADF_ALGO_PIPELINED || plan.algo == MADF_ALGO_SPLIT_K)
    {
        bool const split = plan.splits > 1;
        PipeArgs const args{g, static_cast<__half const*>(x), static_cast<__half const*>(m),
            static_cast<__half const*>(weight), static_cast<__half const*>(bias), static_cast<__half*>(y),
            split ? static_cast<float*>(workspace) : nullptr, split ? plan.stagesPerSplit : 1 << 30};
        cudaError_t const e = withWarps(plan.warps, [&](auto w) {
            return withSource(plan.source, [&](auto src) {
                constexpr int W = decltype(w)::value;
                using Tile = PipeTile<W, decltype(src)::value>;
                dim3 grid = tensorCoreGrid(g, W);
                grid.z = static_cast<unsigned>(plan.splits);
                return launch(pipelinedKernel<W, decltype(src)::value>, grid, dim3(Tile::threads),
                    Tile::sharedBytes(g.window), args);
            });
        });
        if (e != cudaSuccess || !split)
            return e;
        int64_t const count = g.pixels * g.cout;
        return launch(splitSumKernel, dim3(ceilDiv(count, kSumThreads)), dim3(kSumThreads), size_t{0},
            static_cast<float const*>(workspace), plan.splits, count, static_cast<__half*>(y));
    }
    if (plan.algo == MADF_ALGO_TENSOR_CORE)
    {
        TcArgs const a = tensorCoreArgs(g, x, m, weight, bias, y);
        return withWarps(plan.warps, [&](auto w) {
            constexpr int W = decltype(w)::value;
            return launch(tensorCoreKernel<W>, tensorCoreGrid(g, W), dim3(TcTile<W>::threads),
                TcTile<W>::sharedBytes(g.window), a.g, a.x, a.m, a.weight, a.bias, a.y, a.vectorB);
        });
    }
    size_t const smem = madfDynamicFilterSimtSharedBytes(g.cm);
    if (dtype == MADF_FLOAT32)
        return launch(simtKernel<float>, simtGrid(g), dim3(kSimtThreads), smem, g, static_cast<float const*>(x),
            static_cast<float const*>(m), static_cast<float const*>(weight), static_cast<float const*>(bias),
            static_cast<float*>(y));
    return launch(simtKernel<__half>, simtGrid(g), dim3(kSimtThreads), smem, g, static_cast<__half const*>(x),
        static_cast<__half const*>(m), static_cast<__half const*>(weight), static_cast<__half const*>(bias),
        static_cast<__half*>(y));
}

}   // namespace

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
    if (s->featuresLayout != MADF_LAYOUT_NCHW && s->featuresLayout != MADF_LAYOUT_NHWC)
        return "MADFDynamicFilter: features layout must be NCHW (0) or NHWC (1)";
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
// A known tactic: an algorithm, and a split count only with SPLIT_K.
bool validTactic(madfTactic t)
{
    madfAlgo const algo = MADF_TACTIC_ALGO(t);
    int32_t const splits = MADF_TACTIC_SPLITS(t);
    return algo >= MADF_ALGO_AUTO && algo <= MADF_ALGO_SPLIT_K
        && (splits == 0 || (algo == MADF_ALGO_SPLIT_K && splits >= 2 && splits <= MADF_MAX_SPLITS));
}

bool validArguments(madfDynamicFilterShape const* shape, madfDType dtype, madfTactic tactic)
{
    return madfDynamicFilterCheck(shape) == nullptr && (dtype == MADF_FLOAT32 || dtype == MADF_FLOAT16)
        && validTactic(tactic);
}

Plan planOn(madfDynamicFilterShape const& s, madfDType dtype, madfTactic tactic, madfDeviceFacts const& facts,
    size_t workspaceBytes, int warps = 0)
{
    return planCall(
        s, dtype, tactic, facts.computeMajor, facts.multiprocessors, facts.sharedLimit, workspaceBytes, warps);
}
}   // namespace

extern "C" size_t madfDynamicFilterWorkspaceSize(
    const madfDynamicFilterShape* shape, madfDType dtype, madfTactic tactic, const madfDeviceFacts* facts)
{
    if (facts == nullptr || !validArguments(shape, dtype, tactic))
        return 0;
    return workspaceOf(geometry(*shape), planOn(*shape, dtype, tactic, *facts, kUnbounded));
}

// Host code that talks to the CUDA runtime (device queries, launches); the CPU emulation has its own launcher.
#ifndef MADF_EMULATE
namespace
{
// The dynamic shared memory each kernel was opted in to, per device: cudaFuncSetAttribute once per (kernel, device,
// larger size), not on every launch. Keyed by the kernel itself (kernels of one signature share a function type).
cudaError_t optIn(void const* kernel, size_t smem, int32_t device)
{
    if (smem <= 48 * 1024)
        return cudaSuccess;
    static std::mutex mutex;
    static std::map<std::pair<void const*, int32_t>, size_t> granted;
    std::lock_guard<std::mutex> lock(mutex);
    size_t& mine = granted[{kernel, device}];
    if (mine >= smem)
        return cudaSuccess;
    cudaError_t const e =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e == cudaSuccess)
        mine = smem;
    return e;
}

struct CudaLauncher
{
    int32_t device;
    cudaStream_t stream;
    template <typename... Params, typename... Args>
    cudaError_t operator()(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, Args&&... args) const
    {
        cudaError_t const e = optIn(reinterpret_cast<void const*>(kernel), smem, device);
        if (e != cudaSuccess)
            return e;
        kernel<<<grid, block, smem, stream>>>(std::forward<Args>(args)...);
        return cudaGetLastError();
    }
};
}   // namespace

extern "C" cudaError_t madfDynamicFilterQueryDevice(madfDeviceFacts* facts)
{
    int device = 0, major = 0, sms = 0, sharedLimit = 0;
    cudaError_t e = cudaGetDevice(&device);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    if (e == cudaSuccess)
        e = cudaDeviceGetAttribute(&sharedLimit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    if (e == cudaSuccess)
        *facts = madfDeviceFacts{device, major, sms, static_cast<size_t>(sharedLimit)};
    return e;
}

extern "C" madfTactic madfDynamicFilterSelect(const madfDynamicFilterShape* s, madfDType dtype, madfTactic requested)
{
    madfDeviceFacts facts{};
    if (!validArguments(s, dtype, requested) || madfDynamicFilterQueryDevice(&facts) != cudaSuccess)
        return MADF_ALGO_SIMT;
    return tacticOf(planOn(*s, dtype, requested, facts, kUnbounded));
}

extern "C" cudaError_t madfDynamicFilterForwardOn(const madfDynamicFilterShape* shape, madfDType dtype,
    madfTactic tactic, const madfDeviceFacts* facts, const void* features, const void* maskFeatures, const void* weight,
    const void* bias, void* output, void* workspace, size_t workspaceBytes, cudaStream_t stream)
{
    if (facts == nullptr || !validArguments(shape, dtype, tactic))
        return cudaErrorInvalidValue;
    if (geometry(*shape).pixels == 0)
        return cudaSuccess;
    Plan const plan = planOn(*shape, dtype, tactic, *facts, workspace != nullptr ? workspaceBytes : 0);
    return forwardWith(CudaLauncher{facts->device, stream}, *shape, dtype, plan, features, maskFeatures, weight, bias,
        output, workspace);
}

extern "C" cudaError_t madfDynamicFilterForward(const madfDynamicFilterShape* shape, madfDType dtype, madfTactic tactic,
    const void* features, const void* maskFeatures, const void* weight, const void* bias, void* output, void* workspace,
    size_t workspaceBytes, cudaStream_t stream)
{
    if (!validArguments(shape, dtype, tactic))
        return cudaErrorInvalidValue;
    if (geometry(*shape).pixels == 0)
        return cudaSuccess;   // an empty batch needs no device at all
    madfDeviceFacts facts{};
    cudaError_t const e = madfDynamicFilterQueryDevice(&facts);
    if (e != cudaSuccess)
        return e;
    return madfDynamicFilterForwardOn(
        shape, dtype, tactic, &facts, features, maskFeatures, weight, bias, output, workspace, workspaceBytes, stream);
}
#endif
