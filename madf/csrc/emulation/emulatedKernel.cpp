// The fused kernel's C ABI (dynamicFilterKernel.cuh) served on the CPU: the kernels of dynamicFilterKernel.cu, unchanged,
// run by emulate.h on host memory, as an emulated sm_90 would. Linked in place of the CUDA object, it lets the torch
// binding (torchBinding.cpp built with MADF_EMULATE) and the TensorRT plugin library run their real code paths, from
// argument checks to the kernel, on machines without a GPU. Launches are synchronous; `stream` is ignored.
#include "emulate.h"

#define MADF_EMULATE 1
#include "dynamicFilterKernel.cu"

#include <cstdlib>
#include <mutex>

namespace
{
std::mutex gEmulatorMutex;   // the emulator's fibers and barriers are global: one launch at a time
constexpr int kEmulatedComputeCapability = 9;
constexpr int kEmulatedMultiprocessors = 132;         // an H100's
constexpr size_t kEmulatedSharedLimit = 227 * 1024;   // an H100's opt-in maximum per block
}   // namespace

extern "C" cudaError_t madfDynamicFilterQueryDevice(madfDeviceFacts* facts)
{
    *facts = madfDeviceFacts{0, kEmulatedComputeCapability, kEmulatedMultiprocessors, kEmulatedSharedLimit};
    return cudaSuccess;
}

extern "C" madfAlgo madfDynamicFilterSelect(const madfDynamicFilterShape* s, madfDType dtype, madfAlgo requested)
{
    return selectAlgo(s, dtype, requested, kEmulatedComputeCapability, kEmulatedSharedLimit);
}

extern "C" cudaError_t madfDynamicFilterForward(const madfDynamicFilterShape* shape, madfDType dtype, madfAlgo algo,
    const void* features, const void* maskFeatures, const void* weight, const void* bias, void* output,
    cudaStream_t stream)
{
    madfDeviceFacts facts{};
    madfDynamicFilterQueryDevice(&facts);
    return madfDynamicFilterForwardOn(shape, dtype, algo, &facts, features, maskFeatures, weight, bias, output, stream);
}

extern "C" cudaError_t madfDynamicFilterForwardOn(const madfDynamicFilterShape* shape, madfDType dtype, madfAlgo algo,
    const madfDeviceFacts* facts, const void* features, const void* maskFeatures, const void* weight, const void* bias,
    void* output, cudaStream_t)
{
    if (facts == nullptr || !validArguments(shape, dtype))
        return cudaErrorInvalidValue;
    Geometry const g = geometry(*shape);
    if (g.pixels == 0)
        return cudaSuccess;
    std::lock_guard<std::mutex> lock(gEmulatorMutex);
    if (selectAlgo(shape, dtype, algo, facts->computeMajor, facts->sharedLimit) == MADF_ALGO_TENSOR_CORE)
    {
        // The block width the GPU would pick for its SMs, or $MADF_EMULATED_TC_WARPS (2, 4 or 8: tests run each)
        char const* forced = std::getenv("MADF_EMULATED_TC_WARPS");
        int const warps = forced != nullptr ? std::atoi(forced) : tensorCoreWarps(g, facts->multiprocessors);
        TcArgs const a = tensorCoreArgs(g, features, maskFeatures, weight, bias, output);
        withWarps(warps, [&](auto width) {
            constexpr int W = decltype(width)::value;
            emulate::launch(tensorCoreGrid(g, W), dim3(TcTile<W>::threads), TcTile<W>::sharedBytes(g.window),
                [&] { tensorCoreKernel<W>(a.g, a.x, a.m, a.weight, a.bias, a.y, a.vectorB); });
            return 0;
        });
        return cudaSuccess;
    }
    auto simt = [&](auto zero) {
        using T = decltype(zero);
        emulate::launch(simtGrid(g), dim3(kSimtThreads), madfDynamicFilterSimtSharedBytes(g.cm), [&] {
            simtKernel<T>(g, static_cast<T const*>(features), static_cast<T const*>(maskFeatures),
                static_cast<T const*>(weight), static_cast<T const*>(bias), static_cast<T*>(output));
        });
    };
    if (dtype == MADF_FLOAT32)
        simt(float{});
    else
        simt(__half{});
    return cudaSuccess;
}
