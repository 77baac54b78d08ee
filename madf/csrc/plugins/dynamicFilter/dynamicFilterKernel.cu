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

#include <atomic>
#include <cstring>
#include <type_traits>

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

__device__ __forceinline__ void copyAsync16(void* dst, void const* src, bool valid)
{
#if defined(MADF_EMULATE)
    if (valid)
        std::memcpy(dst, src, 16);
    else
        std::memset(dst, 0, 16);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    unsigned const s = static_cast<unsigned>(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(valid ? 16 : 0));
#else
    *static_cast<uint4*>(dst) = valid ? *static_cast<uint4 const*>(src) : make_uint4(0, 0, 0, 0);
#endif
}

__device__ __forceinline__ void copyAsyncCommit()
{
#if !defined(MADF_EMULATE) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}

__device__ __forceinline__ void copyAsyncWaitAll()
{
#if !defined(MADF_EMULATE) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
#endif
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

    int const tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
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

    // Epilogue: y[p, o] = sum_c m[p, c] * acc_o[p, c] + acc_bias[p, o], through a per-warp scratch (B's space, now
    // free). Lane (r, h) contracts the fragments of output channels o = 2i + h for pixel r: 16 consecutive pixels per
    // half-warp, so the NCHW stores are coalesced; the scratch is column-major so its reads are conflict-free.
    float* const scratch = reinterpret_cast<float*>(bsBase) + warp * 256;
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
                sum += ms[c * Tile::pixels + warp * 16 + r] * scratch[c * 16 + r];
            out[f / 2] = sum;
        }
        __syncwarp();
    }
    wmma::store_matrix_sync(scratch, acc[kTcChannels], 16, wmma::mem_col_major);
    __syncwarp();
    int64_t const q = p0 + warp * 16 + r;
    if (q < g.pixels)
    {
        int32_t const n = static_cast<int32_t>(q / g.howo),
                      pix = static_cast<int32_t>(q - static_cast<int64_t>(n) * g.howo);
        __half* const yq = y + static_cast<int64_t>(n) * g.cout * g.howo + pix;
#pragma unroll
        for (int i = 0; i < kTcChannels / 2; ++i)
        {
            int32_t const o = o0 + 2 * i + h;
            if (o < g.cout)
                yq[static_cast<int64_t>(o) * g.howo] = fromFloat<__half>(out[i] + scratch[(2 * i + h) * 16 + r]);
        }
    }
#endif
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
// The tensor-core kernel takes FP16 data, at most 16 mask channels, sm_70 or newer, and a window whose offset table
// fits the block's shared memory (`sharedLimit`, the device's opt-in maximum).
madfAlgo selectAlgo(
    madfDynamicFilterShape const* s, madfDType dtype, madfAlgo requested, int ccMajor, size_t sharedLimit)
{
    if (requested == MADF_ALGO_SIMT || dtype != MADF_FLOAT16 || s == nullptr || s->maskChannels + 1 > kTcMaxC1
        || ccMajor < 7
        || TcTile<kTcWidestWarps>::sharedBytes(s->inChannels * s->kernelSize * s->kernelSize) > sharedLimit)
        return MADF_ALGO_SIMT;
    return MADF_ALGO_TENSOR_CORE;
}

bool validArguments(madfDynamicFilterShape const* shape, madfDType dtype)
{
    return madfDynamicFilterCheck(shape) == nullptr && (dtype == MADF_FLOAT32 || dtype == MADF_FLOAT16);
}
}   // namespace

// Host code that talks to the CUDA runtime (device queries, launches); the CPU emulation has its own launcher.
#ifndef MADF_EMULATE
namespace
{
constexpr int32_t kMaxDevices = 64;

// The dynamic shared memory a kernel was opted in to, per device: cudaFuncSetAttribute once per (kernel, device,
// larger size), not on every launch.
template <typename Kernel>
cudaError_t optIn(Kernel kernel, size_t smem, int32_t device)
{
    static std::atomic<size_t> granted[kMaxDevices];
    if (smem <= 48 * 1024 || (device >= 0 && device < kMaxDevices && granted[device].load() >= smem))
        return cudaSuccess;
    cudaError_t const e =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (e == cudaSuccess && device >= 0 && device < kMaxDevices)
        granted[device].store(smem);
    return e;
}

template <typename T>
cudaError_t launchSimt(Geometry const& g, size_t smem, int32_t device, cudaStream_t stream, void const* x,
    void const* m, void const* weight, void const* bias, void* y)
{
    cudaError_t const e = optIn(simtKernel<T>, smem, device);   // large Cm: more than the default 48 KiB
    if (e != cudaSuccess)
        return e;
    simtKernel<T><<<simtGrid(g), kSimtThreads, smem, stream>>>(g, static_cast<T const*>(x), static_cast<T const*>(m),
        static_cast<T const*>(weight), static_cast<T const*>(bias), static_cast<T*>(y));
    return cudaGetLastError();
}

template <int Warps>
cudaError_t launchTensorCore(TcArgs const& a, int32_t device, cudaStream_t stream)
{
    size_t const smem = TcTile<Warps>::sharedBytes(a.g.window);   // over 48 KiB: opt in (select checked the limit)
    cudaError_t const e = optIn(tensorCoreKernel<Warps>, smem, device);
    if (e != cudaSuccess)
        return e;
    tensorCoreKernel<Warps><<<tensorCoreGrid(a.g, Warps), TcTile<Warps>::threads, smem, stream>>>(
        a.g, a.x, a.m, a.weight, a.bias, a.y, a.vectorB);
    return cudaGetLastError();
}
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

extern "C" madfAlgo madfDynamicFilterSelect(const madfDynamicFilterShape* s, madfDType dtype, madfAlgo requested)
{
    madfDeviceFacts facts{};
    if (madfDynamicFilterQueryDevice(&facts) != cudaSuccess)
        return MADF_ALGO_SIMT;
    return selectAlgo(s, dtype, requested, facts.computeMajor, facts.sharedLimit);
}

extern "C" cudaError_t madfDynamicFilterForwardOn(const madfDynamicFilterShape* shape, madfDType dtype, madfAlgo algo,
    const madfDeviceFacts* facts, const void* features, const void* maskFeatures, const void* weight, const void* bias,
    void* output, cudaStream_t stream)
{
    if (facts == nullptr || !validArguments(shape, dtype))
        return cudaErrorInvalidValue;
    Geometry const g = geometry(*shape);
    if (g.pixels == 0)
        return cudaSuccess;
    if (selectAlgo(shape, dtype, algo, facts->computeMajor, facts->sharedLimit) == MADF_ALGO_TENSOR_CORE)
    {
        TcArgs const args = tensorCoreArgs(g, features, maskFeatures, weight, bias, output);
        return withWarps(tensorCoreWarps(g, facts->multiprocessors),
            [&](auto warps) { return launchTensorCore<decltype(warps)::value>(args, facts->device, stream); });
    }
    size_t const smem = madfDynamicFilterSimtSharedBytes(g.cm);
    if (dtype == MADF_FLOAT32)
        return launchSimt<float>(g, smem, facts->device, stream, features, maskFeatures, weight, bias, output);
    return launchSimt<__half>(g, smem, facts->device, stream, features, maskFeatures, weight, bias, output);
}

extern "C" cudaError_t madfDynamicFilterForward(const madfDynamicFilterShape* shape, madfDType dtype, madfAlgo algo,
    const void* features, const void* maskFeatures, const void* weight, const void* bias, void* output,
    cudaStream_t stream)
{
    if (!validArguments(shape, dtype))
        return cudaErrorInvalidValue;
    if (geometry(*shape).pixels == 0)
        return cudaSuccess;   // an empty batch needs no device at all
    madfDeviceFacts facts{};
    cudaError_t const e = madfDynamicFilterQueryDevice(&facts);
    if (e != cudaSuccess)
        return e;
    return madfDynamicFilterForwardOn(shape, dtype, algo, &facts, features, maskFeatures, weight, bias, output, stream);
}
#endif
