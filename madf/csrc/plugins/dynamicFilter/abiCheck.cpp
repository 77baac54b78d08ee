// Host-side checks of the kernel's C ABI that need no GPU: output sizes, shape validation, algorithm fallback and a
// clean error (not a crash) from a launch where no device exists. Built by CMake as madf_dynamic_filter_abi_check and
// run by tests/test_plugin_build.py; prints one line per check and exits non-zero on the first failure.
#include "dynamicFilterKernel.cuh"

#include <cstdio>
#include <cstring>

namespace
{
int gFailures = 0;

void expect(bool ok, char const* what)
{
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    gFailures += ok ? 0 : 1;
}

madfDynamicFilterShape official(int32_t level1Size)
{
    // level 1 of the official model: Cin 6 ([image, mask] with mask channels), k 7, pad 3, Cout 16, Cm 16
    madfDynamicFilterShape s{};
    s.batch = 2;
    s.inChannels = 6;
    s.height = level1Size;
    s.width = level1Size;
    s.maskChannels = 16;
    s.outChannels = 16;
    s.kernelSize = 7;
    s.stride = 2;
    s.padding = 3;
    return s;
}
}   // namespace

int main()
{
    expect(madfDynamicFilterOutputSize(256, 7, 2, 3) == 128, "256 px, k7 s2 p3 -> 128");
    expect(madfDynamicFilterOutputSize(13, 3, 2, 1) == 7, "13 px, k3 s2 p1 -> 7");
    expect(madfDynamicFilterOutputSize(1, 7, 2, 3) == 1, "1 px, k7 s2 p3 -> 1");
    expect(madfDynamicFilterOutputSize(1, 7, 2, 0) == 0, "window larger than the image -> 0");

    madfDynamicFilterShape s = official(256);
    expect(madfDynamicFilterCheck(&s) == nullptr, "official level-1 shape is valid");
    s.kernelSize = 0;
    char const* message = madfDynamicFilterCheck(&s);
    expect(message != nullptr && std::strstr(message, "kernel_size") != nullptr, "kernel_size 0 is named");
    s = official(2);
    s.padding = 0;
    message = madfDynamicFilterCheck(&s);
    expect(message != nullptr && std::strstr(message, "smaller than one window") != nullptr, "too small is named");
    s = official(256);
    s.maskChannels = 0;
    expect(madfDynamicFilterCheck(&s) != nullptr, "no mask channels is refused");
    expect(madfDynamicFilterCheck(nullptr) != nullptr, "null shape is refused");

    s = official(256);
    expect(madfDynamicFilterSelect(&s, MADF_FLOAT32, MADF_ALGO_TENSOR_CORE) == MADF_ALGO_SIMT, "FP32 runs SIMT");
    s.maskChannels = 24;
    expect(madfDynamicFilterSelect(&s, MADF_FLOAT16, MADF_ALGO_AUTO) == MADF_ALGO_SIMT, "Cm > 16 runs SIMT");

    // tactics: the plan each one resolves to on an emulated-free host (the device query fails: SIMT), and the
    // workspace split-K needs for given device facts
    s = official(256);
    expect(madfDynamicFilterSelect(&s, MADF_FLOAT16, 9) == MADF_ALGO_SIMT, "an unknown tactic is not run");
    expect(madfDynamicFilterSelect(&s, MADF_FLOAT16, MADF_TACTIC(MADF_ALGO_PIPELINED, 2)) == MADF_ALGO_SIMT,
        "a split count without split-K is not a tactic");
    madfDeviceFacts const h100{0, 9, 132, 227 * 1024};
    s = official(16);   // 8x8 outputs x 2 images: 1 CTA of 128 pixels; the window is 10 stages
    s.batch = 1;
    expect(madfDynamicFilterWorkspaceSize(&s, MADF_FLOAT16, MADF_TACTIC(MADF_ALGO_SPLIT_K, 4), &h100)
            == sizeof(float) * 4 * 64 * 16,
        "split-K in 4: four FP32 partial outputs");
    expect(madfDynamicFilterWorkspaceSize(&s, MADF_FLOAT16, MADF_TACTIC(MADF_ALGO_SPLIT_K, 8), &h100)
            == sizeof(float) * 5 * 64 * 16,
        "split-K in 8 of 10 stages: 5 splits (at least 2 stages each)");
    expect(madfDynamicFilterWorkspaceSize(&s, MADF_FLOAT16, MADF_ALGO_PIPELINED, &h100) == 0,
        "no workspace without split-K");
    expect(madfDynamicFilterWorkspaceSize(&s, MADF_FLOAT32, MADF_TACTIC(MADF_ALGO_SPLIT_K, 4), &h100) == 0,
        "FP32 runs SIMT: no workspace");
    s.featuresLayout = 2;
    expect(madfDynamicFilterCheck(&s) != nullptr, "an unknown features layout is refused");
    expect(madfDynamicFilterSimtSharedBytes(16) == sizeof(float) * (8 * 64 + 17 * 64 + 17 * 8 * 16),
        "SIMT shared memory for Cm = 16");

    s = official(256);
    s.stride = 0;
    expect(madfDynamicFilterForward(
               &s, MADF_FLOAT32, MADF_ALGO_AUTO, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, nullptr)
            == cudaErrorInvalidValue,
        "invalid shape -> cudaErrorInvalidValue before any launch");
    s = official(256);
    s.batch = 0;
    expect(madfDynamicFilterForward(
               &s, MADF_FLOAT16, MADF_ALGO_AUTO, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, nullptr)
            == cudaSuccess,
        "empty batch is a no-op");
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0)
    {
        s = official(16);
        cudaError_t const e = madfDynamicFilterForward(
            &s, MADF_FLOAT32, MADF_ALGO_AUTO, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, nullptr);
        expect(e != cudaSuccess, "no GPU: the launch reports an error instead of crashing");
    }
    std::printf("%d failure(s)\n", gFailures);
    return gFailures == 0 ? 0 : 1;
}
