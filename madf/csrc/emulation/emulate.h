// A CPU emulation of the CUDA execution model, enough to run the fused dynamic-filter kernels unchanged, so their
// indexing, tiling, barriers and epilogues are tested on machines without a GPU.
//
// Each CUDA thread of a block is a fiber (ucontext) on one OS thread; blocks run one after another. __syncthreads and
// __syncwarp are barriers that yield to the next fiber until every member arrived, so a missing barrier shows up as
// a wrong answer and a divergent one as a deadlock (the test's timeout). Static __shared__ arrays become function
// statics (blocks never overlap); dynamic shared memory is one buffer per block, filled with garbage as on a GPU.
//
// cp.async is asynchronous: a copy fills its destination with garbage when issued and lands only at the
// cp.async.wait_group that covers its commit group, so reading a stage before waiting for it, or before the barrier
// that follows every thread's wait, reads garbage (a NaN in FP16), as a GPU may.
//
// WMMA's element-to-lane mapping is unspecified by CUDA, so any consistent one is a valid implementation: here lane 0
// of each warp holds whole 16x16 tiles and does all fragment work; the kernels only see fragments through
// load/mma/store, and read results after store_matrix_sync + __syncwarp, as they must on a GPU.
#ifndef MADF_EMULATE_H
#define MADF_EMULATE_H

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <ucontext.h>

#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <type_traits>
#include <vector>

#undef __global__
#undef __device__
#undef __forceinline__
#undef __launch_bounds__
#undef __shared__
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

namespace emulate
{
inline uint3 threadIdx_{}, blockIdx_{};
inline dim3 blockDim_{};

struct Fiber
{
    ucontext_t context{};
    std::vector<char> stack;
    bool done{false};
};

inline ucontext_t scheduler{};
inline std::vector<Fiber> fibers;
inline unsigned current = 0;
inline std::function<void()> const* body = nullptr;
inline std::vector<unsigned char> dynamicShared;

// cp.async in flight, per thread: the copies not yet committed, then the committed groups, oldest first.
struct AsyncCopy
{
    void* dst;
    void const* src;
    bool valid;
};
struct AsyncCopies
{
    std::vector<AsyncCopy> open;
    std::deque<std::vector<AsyncCopy>> groups;
};
inline std::vector<AsyncCopies> asyncCopies;
constexpr size_t kStackBytes = 256 * 1024;   // a lane's registers: 17 accumulator tiles of 1 KiB and change

inline void yield() { swapcontext(&fibers[current].context, &scheduler); }

inline void fiberMain()
{
    (*body)();
    fibers[current].done = true;   // uc_link returns to the scheduler
}

// A barrier of `expected` fibers: arrivals wait (yielding) until the last one arrives.
struct Barrier
{
    unsigned expected{0}, arrived{0}, generation{0};
    void arriveAndWait()
    {
        unsigned const mine = generation;
        if (++arrived == expected)
        {
            arrived = 0;
            ++generation;
            return;
        }
        while (generation == mine)
            yield();
    }
};
inline Barrier blockBarrier;
inline std::vector<Barrier> warpBarriers;

template <typename T>
T* dynamicSharedAs()
{
    return reinterpret_cast<T*>(dynamicShared.data());
}

// Run kernel() as a grid of blocks of `block` threads (x only) with `sharedBytes` of dynamic shared memory.
inline void launch(dim3 grid, dim3 block, size_t sharedBytes, std::function<void()> const& kernel)
{
    unsigned const threads = block.x;
    body = &kernel;
    fibers.resize(threads);
    for (Fiber& f : fibers)
        f.stack.resize(kStackBytes);
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
        {
            for (unsigned bx = 0; bx < grid.x; ++bx)
            {
                blockIdx_ = uint3{bx, by, bz};
                blockDim_ = block;
                blockBarrier = Barrier{threads};
                warpBarriers.assign((threads + 31) / 32, Barrier{});
                for (unsigned w = 0; w < warpBarriers.size(); ++w)
                    warpBarriers[w].expected = threads - 32 * w < 32 ? threads - 32 * w : 32;
                dynamicShared.assign(sharedBytes + 64, 0xCD);
                asyncCopies.assign(threads, AsyncCopies{});
                for (Fiber& f : fibers)
                {
                    getcontext(&f.context);
                    f.context.uc_stack.ss_sp = f.stack.data();
                    f.context.uc_stack.ss_size = f.stack.size();
                    f.context.uc_link = &scheduler;
                    f.done = false;
                    makecontext(&f.context, fiberMain, 0);
                }
                // round-robin until every fiber has returned
                for (unsigned live = threads; live > 0;)
                {
                    live = 0;
                    for (current = 0; current < threads; ++current)
                    {
                        if (fibers[current].done)
                            continue;
                        threadIdx_ = uint3{current, 0, 0};
                        swapcontext(&scheduler, &fibers[current].context);
                        live += fibers[current].done ? 0 : 1;
                    }
                }
            }
        }
}
constexpr unsigned char kInFlight = 0xFF;   // FP16 0xFFFF is a NaN: any use of an unlanded copy shows

inline void copyAsync16(void* dst, void const* src, bool valid)
{
    std::memset(dst, kInFlight, 16);
    asyncCopies[threadIdx_.x].open.push_back(AsyncCopy{dst, src, valid});
}

inline void copyAsyncCommit()
{
    AsyncCopies& mine = asyncCopies[threadIdx_.x];
    mine.groups.push_back(std::move(mine.open));
    mine.open.clear();
}

inline void copyAsyncWait(int pending)
{
    AsyncCopies& mine = asyncCopies[threadIdx_.x];
    while (mine.groups.size() > static_cast<size_t>(pending))
    {
        for (AsyncCopy const& c : mine.groups.front())
        {
            if (c.valid)
                std::memcpy(c.dst, c.src, 16);
            else
                std::memset(c.dst, 0, 16);
        }
        mine.groups.pop_front();
    }
}
}   // namespace emulate

#define threadIdx (emulate::threadIdx_)
#define blockIdx (emulate::blockIdx_)
#define blockDim (emulate::blockDim_)
#define MADF_DYNAMIC_SHARED(type, name) type* name = emulate::dynamicSharedAs<type>()

inline void __syncthreads() { emulate::blockBarrier.arriveAndWait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emulate::warpBarriers[threadIdx.x / 32].arriveAndWait(); }

namespace nvcuda
{
namespace wmma
{
struct matrix_a
{
};
struct matrix_b
{
};
struct accumulator
{
};
struct row_major
{
};
struct col_major
{
};
enum layout_t
{
    mem_row_major,
    mem_col_major
};

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment
{
    static constexpr int rows = std::is_same<Use, matrix_b>::value ? K : M;
    static constexpr int cols = std::is_same<Use, matrix_a>::value ? K : N;
    float x[rows * cols];   // the whole tile, held by lane 0
};

inline bool leader() { return threadIdx.x % 32 == 0; }

template <typename Use, int M, int N, int K, typename T, typename L>
void fill_fragment(fragment<Use, M, N, K, T, L>& f, float v)
{
    if (leader())
        for (float& e : f.x)
            e = v;
}

template <typename Use, int M, int N, int K, typename T, typename L>
void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, T const* p, unsigned ldm)
{
    constexpr bool rowMajor = std::is_same<L, row_major>::value;
    static_assert(rowMajor || std::is_same<L, col_major>::value, "a fragment is loaded row- or column-major");
    if (leader())
        for (int r = 0; r < f.rows; ++r)
            for (int c = 0; c < f.cols; ++c)
                f.x[r * f.cols + c] = static_cast<float>(rowMajor ? p[r * ldm + c] : p[c * ldm + r]);
}

template <int M, int N, int K, typename TA, typename LA, typename TB, typename LB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, fragment<matrix_a, M, N, K, TA, LA> const& a,
    fragment<matrix_b, M, N, K, TB, LB> const& b, fragment<accumulator, M, N, K, float> const& c)
{
    if (!leader())
        return;
    float out[M * N];
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j)
        {
            float s = c.x[i * N + j];
            for (int k = 0; k < K; ++k)
                s += a.x[i * K + k] * b.x[k * N + j];   // FP16 x FP16 products are exact in FP32, as on tensor cores
            out[i * N + j] = s;
        }
    std::memcpy(d.x, out, sizeof(out));
}

template <int M, int N, int K>
void store_matrix_sync(float* p, fragment<accumulator, M, N, K, float> const& f, unsigned ldm, layout_t layout)
{
    if (leader())
        for (int i = 0; i < M; ++i)
            for (int j = 0; j < N; ++j)
                p[layout == mem_row_major ? i * ldm + j : j * ldm + i] = f.x[i * N + j];
}
}   // namespace wmma
}   // namespace nvcuda

#endif   // MADF_EMULATE_H
