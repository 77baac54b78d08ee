// The fused kernel's C ABI (dynamicFilterKernel.cuh) served on the CPU: the kernels of dynamicFilterKernel.cu, unchanged,
// run by emulate.h on host memory, as an emulated sm_90 would. Linked in place of the CUDA object, it lets the torch
// binding (torchBinding.cpp built with MADF_EMULATE) and the TensorRT plugin library run their real code paths, from
// argument checks and the launch plan to the kernels, on machines without a GPU. Launches are synchronous; `stream` is
// ignored.
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

// The block width the GPU would pick for its SMs, or $MADF_EMULATED_TC_WARPS (2, 4 or 8: tests run each).
int forcedWarps()
{
    char const* forced = std::getenv("MADF_EMULATED_TC_WARPS");
    return forced != nullptr ? std::atoi(forced) : 0;
}

// forwardWith's launcher: each block's threads as fibers, blocks one after another (emulate.h).
struct EmulatedLauncher
{
    template <typename... Params, typename... Args>
    cudaError_t operator()(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, Args&&... args) const
    {
        emulate::launch(grid, block, smem, [&] { kernel(args...); });
        return cudaSuccess;
    }
};
}   // namespace

extern "C" cudaError_t madfDynamicFilterQueryDevice(madfDeviceFacts* facts)
{
    *facts = madfDeviceFacts{0, kEmulatedComputeCapability, kEmulatedMultiprocessors, kEmulatedSharedLimit};
    return cudaSuccess;
}

extern "C" madfTactic madfDynamicFilterSelect(const madfDynamicFilterShape* s, madfDType dtype, madfTactic requested)
{
    madfDeviceFacts facts{};
    madfDynamicFilterQueryDevice(&facts);
    if (!validArguments(s, dtype, requested))
        return MADF_ALGO_SIMT;
    return tacticOf(planOn(*s, dtype, requested, facts, kUnbounded, forcedWarps()));
}

extern "C" cudaError_t madfDynamicFilterForward(const madfDynamicFilterShape* shape, madfDType dtype, madfTactic tactic,
    const void* features, const void* maskFeatures, const void* weight, const void* bias, void* output, void* workspace,
    size_t workspaceBytes, cudaStream_t stream)
{
    madfDeviceFacts facts{};
    madfDynamicFilterQueryDevice(&facts);
    return madfDynamicFilterForwardOn(
        shape, dtype, tactic, &facts, features, maskFeatures, weight, bias, output, workspace, workspaceBytes, stream);
}

extern "C" cudaError_t madfDynamicFilterForwardOn(const madfDynamicFilterShape* shape, madfDType dtype,
    madfTactic tactic, const madfDeviceFacts* facts, const void* features, const void* maskFeatures, const void* weight,
    const void* bias, void* output, void* workspace, size_t workspaceBytes, cudaStream_t)
{
    if (facts == nullptr || !validArguments(shape, dtype, tactic))
        return cudaErrorInvalidValue;
    if (geometry(*shape).pixels == 0)
        return cudaSuccess;
    std::lock_guard<std::mutex> lock(gEmulatorMutex);
    Plan const plan = planOn(*shape, dtype, tactic, *facts, workspace != nullptr ? workspaceBytes : 0, forcedWarps());
    return forwardWith(
        EmulatedLauncher{}, *shape, dtype, plan, features, maskFeatures, weight, bias, output, workspace);
}
