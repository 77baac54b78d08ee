// The fused kernel bound into a small torch extension, so tests and benchmarks run the exact launch function the
// TensorRT plugin's enqueue calls (madf/model/fused_kernel.py builds it on first use). Built with MADF_EMULATE and
// linked with madf/csrc/emulation/emulatedKernel.cpp instead of the .cu, the same binding takes CPU tensors and
// runs the kernels under the CPU emulation, so every check below is exercised on machines without a GPU.
#include <torch/extension.h>
#ifndef MADF_EMULATE
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "dynamicFilterKernel.cuh"

#include <limits>

namespace
{

#ifdef MADF_EMULATE
constexpr char const* kDevice = "CPU tensors (this build runs the kernels under the CPU emulation)";
bool onKernelDevice(torch::Tensor const& t) { return t.device().is_cpu(); }
#else
constexpr char const* kDevice = "CUDA tensors";
bool onKernelDevice(torch::Tensor const& t) { return t.is_cuda(); }
#endif

int32_t toInt32(int64_t v, char const* name)
{
    TORCH_CHECK(v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max(), name, " = ", v,
        " is out of range");
    return static_cast<int32_t>(v);
}

// Every property the kernel relies on is checked here, before anything touches device memory: a wrong input must be
// a Python exception, never an out-of-bounds read.
madfDynamicFilterShape shapeOf(torch::Tensor const& x, torch::Tensor const& m, torch::Tensor const& weight,
    torch::Tensor const& bias, int64_t kernelSize, int64_t stride, int64_t padding)
{
    TORCH_CHECK(x.dim() == 4 && m.dim() == 4, "features and mask_features must be 4-D (N, C, H, W); got ", x.sizes(),
        " and ", m.sizes());
    TORCH_CHECK(kernelSize > 0 && stride > 0 && padding >= 0,
        "kernel_size and stride must be positive and padding "
        "non-negative; got ",
        kernelSize, ", ", stride, ", ", padding);
    int64_t const window = x.size(1) * kernelSize * kernelSize;
    TORCH_CHECK(weight.dim() == 4 && weight.size(2) == 1 && weight.size(3) == 1 && weight.size(0) > 0
            && weight.size(0) % window == 0,
        "weight must be (Cin*k*k*Cout, Cm, 1, 1) with Cin*k*k = ", window, "; got ", weight.sizes());
    TORCH_CHECK(
        bias.dim() == 1 && bias.size(0) == weight.size(0), "bias must be (", weight.size(0), ",); got ", bias.sizes());
    madfDynamicFilterShape s{};
    s.batch = toInt32(x.size(0), "batch");
    s.inChannels = toInt32(x.size(1), "features channels");
    s.height = toInt32(x.size(2), "height");
    s.width = toInt32(x.size(3), "width");
    s.maskChannels = toInt32(m.size(1), "mask_features channels");
    s.outChannels = toInt32(weight.size(0) / window, "out_channels");
    s.kernelSize = toInt32(kernelSize, "kernel_size");
    s.stride = toInt32(stride, "stride");
    s.padding = toInt32(padding, "padding");
    char const* problem = madfDynamicFilterCheck(&s);
    TORCH_CHECK(problem == nullptr, problem == nullptr ? "" : problem);
    TORCH_CHECK(weight.size(1) == s.maskChannels, "weight takes ", weight.size(1), " mask channels, mask_features has ",
        s.maskChannels);
    int32_t const ho = madfDynamicFilterOutputSize(s.height, s.kernelSize, s.stride, s.padding);
    int32_t const wo = madfDynamicFilterOutputSize(s.width, s.kernelSize, s.stride, s.padding);
    TORCH_CHECK(m.size(0) == s.batch && m.size(2) == ho && m.size(3) == wo, "mask_features ", m.sizes(),
        " do not match the output grid (", s.batch, ", ", ho, "x", wo, ")");
    return s;
}

madfDType dtypeOf(torch::Tensor const& x)
{
    if (x.scalar_type() == torch::kFloat32)
        return MADF_FLOAT32;
    TORCH_CHECK(
        x.scalar_type() == torch::kFloat16, "the fused dynamic filter takes float32 or float16, not ", x.scalar_type());
    return MADF_FLOAT16;
}

void checkTensors(
    torch::Tensor const& x, torch::Tensor const& m, torch::Tensor const& weight, torch::Tensor const& bias)
{
    for (torch::Tensor const* t : {&x, &m, &weight, &bias})
    {
        TORCH_CHECK(t->defined(), "the fused dynamic filter got an undefined tensor");
        TORCH_CHECK(onKernelDevice(*t), "the fused dynamic filter runs on ", kDevice, "; got one on ", t->device());
        TORCH_CHECK(
            t->device() == x.device(), "all inputs must be on one device; got ", x.device(), " and ", t->device());
        TORCH_CHECK(t->scalar_type() == x.scalar_type(), "all inputs must share one dtype; got ", x.scalar_type(),
            " and ", t->scalar_type());
    }
    dtypeOf(x);
}

madfTactic tacticOf(int64_t algo)
{
    int64_t const kind = algo & 0xff, splits = algo >> 8;
    bool const known = algo >= 0 && kind <= MADF_ALGO_SPLIT_K
        && (splits == 0 || (kind == MADF_ALGO_SPLIT_K && splits >= 2 && splits <= MADF_MAX_SPLITS));
    TORCH_CHECK(known,
        "algo must be 0 (auto), 1 (simt), 2 (tensor cores), 3 (pipelined) or 4 (split-K), with the split count "
        "2..8 in bits 8-15 for split-K only; got ",
        algo);
    return static_cast<madfTactic>(algo);
}

// Features stay NHWC (no copy) when they are channels-last and a pipelined or split-K tactic, asked for by name,
// reads that layout; otherwise NCHW (auto keeps round 1's choice).
bool readsChannelsLast(torch::Tensor const& x, madfDynamicFilterShape s, madfTactic tactic)
{
    madfAlgo const requested = MADF_TACTIC_ALGO(tactic);
    if ((requested != MADF_ALGO_PIPELINED && requested != MADF_ALGO_SPLIT_K) || x.is_contiguous()
        || !x.is_contiguous(at::MemoryFormat::ChannelsLast))
        return false;
    s.featuresLayout = MADF_LAYOUT_NHWC;
    madfAlgo const algo = MADF_TACTIC_ALGO(madfDynamicFilterSelect(&s, dtypeOf(x), tactic));
    return algo == MADF_ALGO_PIPELINED || algo == MADF_ALGO_SPLIT_K;
}

}   // namespace

torch::Tensor forward(torch::Tensor x, torch::Tensor m, torch::Tensor weight, torch::Tensor bias, int64_t kernelSize,
    int64_t stride, int64_t padding, int64_t algo)
{
    checkTensors(x, m, weight, bias);
    madfTactic const tactic = tacticOf(algo);
    madfDynamicFilterShape s = shapeOf(x, m, weight, bias, kernelSize, stride, padding);
#ifndef MADF_EMULATE
    c10::cuda::CUDAGuard guard(x.device());
#endif
    if (readsChannelsLast(x, s, tactic))
        s.featuresLayout = MADF_LAYOUT_NHWC;
    // other views are copied: the kernels index dense NCHW (or NHWC features)
    auto xc = s.featuresLayout == MADF_LAYOUT_NHWC ? x : x.contiguous();
    auto mc = m.contiguous(), wc = weight.contiguous(), bc = bias.contiguous();
    auto y = torch::empty({s.batch, s.outChannels, m.size(2), m.size(3)}, x.options());
#ifdef MADF_EMULATE
    cudaStream_t const stream = nullptr;
#else
    cudaStream_t const stream = c10::cuda::getCurrentCUDAStream().stream();
#endif
    madfDeviceFacts facts{};
    cudaError_t err = madfDynamicFilterQueryDevice(&facts);
    TORCH_CHECK(err == cudaSuccess, "MADFDynamicFilter: cannot query the device: ", cudaGetErrorString(err));
    // split-K's FP32 partial outputs, from torch's allocator (stream-ordered: freed after the launch is safe)
    size_t const bytes = madfDynamicFilterWorkspaceSize(&s, dtypeOf(x), tactic, &facts);
    auto workspace = torch::empty({static_cast<int64_t>(bytes)}, x.options().dtype(torch::kUInt8));
    err = madfDynamicFilterForwardOn(&s, dtypeOf(x), tactic, &facts, xc.data_ptr(), mc.data_ptr(), wc.data_ptr(),
        bc.data_ptr(), y.data_ptr(), bytes > 0 ? workspace.data_ptr() : nullptr, bytes, stream);
    TORCH_CHECK(err == cudaSuccess, "MADFDynamicFilter launch failed: ", cudaGetErrorString(err));
    return y;
}

// The tactic forward would run for these inputs (AUTO resolved, the split count of split-K filled in).
int64_t selected(torch::Tensor x, torch::Tensor m, torch::Tensor weight, torch::Tensor bias, int64_t kernelSize,
    int64_t stride, int64_t padding, int64_t algo)
{
    checkTensors(x, m, weight, bias);
    madfTactic const tactic = tacticOf(algo);
    madfDynamicFilterShape s = shapeOf(x, m, weight, bias, kernelSize, stride, padding);
#ifndef MADF_EMULATE
    c10::cuda::CUDAGuard guard(x.device());   // the algorithm depends on this tensor's GPU, not the current one
#endif
    if (readsChannelsLast(x, s, tactic))
        s.featuresLayout = MADF_LAYOUT_NHWC;
    return madfDynamicFilterSelect(&s, dtypeOf(x), tactic);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module)
{
    module.def("forward", &forward, "fused MADF dynamic filter (algo: a madfTactic, dynamicFilterKernel.cuh)");
    module.def("selected", &selected, "the tactic forward would run for these inputs");
}
