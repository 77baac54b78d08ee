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

madfAlgo algoOf(int64_t algo)
{
    TORCH_CHECK(algo >= MADF_ALGO_AUTO && algo <= MADF_ALGO_TENSOR_CORE,
        "algo must be 0 (auto), 1 (simt) or 2 "
        "(tensor cores); got ",
        algo);
    return static_cast<madfAlgo>(algo);
}

}   // namespace

torch::Tensor forward(torch::Tensor x, torch::Tensor m, torch::Tensor weight, torch::Tensor bias, int64_t kernelSize,
    int64_t stride, int64_t padding, int64_t algo)
{
    checkTensors(x, m, weight, bias);
    madfAlgo const requested = algoOf(algo);
    madfDynamicFilterShape const s = shapeOf(x, m, weight, bias, kernelSize, stride, padding);
    // non-contiguous views are copied: the kernel indexes dense NCHW
    auto xc = x.contiguous(), mc = m.contiguous(), wc = weight.contiguous(), bc = bias.contiguous();
    auto y = torch::empty({s.batch, s.outChannels, m.size(2), m.size(3)}, x.options());
#ifdef MADF_EMULATE
    cudaStream_t const stream = nullptr;
#else
    c10::cuda::CUDAGuard guard(x.device());
    cudaStream_t const stream = c10::cuda::getCurrentCUDAStream().stream();
#endif
    cudaError_t const err = madfDynamicFilterForward(
        &s, dtypeOf(x), requested, xc.data_ptr(), mc.data_ptr(), wc.data_ptr(), bc.data_ptr(), y.data_ptr(), stream);
    TORCH_CHECK(err == cudaSuccess, "MADFDynamicFilter launch failed: ", cudaGetErrorString(err));
    return y;
}

std::string selected(torch::Tensor x, torch::Tensor m, torch::Tensor weight, torch::Tensor bias, int64_t kernelSize,
    int64_t stride, int64_t padding, int64_t algo)
{
    checkTensors(x, m, weight, bias);
    madfAlgo const requested = algoOf(algo);
    madfDynamicFilterShape const s = shapeOf(x, m, weight, bias, kernelSize, stride, padding);
#ifndef MADF_EMULATE
    c10::cuda::CUDAGuard guard(x.device());   // the algorithm depends on this tensor's GPU, not the current one
#endif
    return madfDynamicFilterSelect(&s, dtypeOf(x), requested) == MADF_ALGO_TENSOR_CORE ? "tensor_core" : "simt";
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module)
{
    module.def("forward", &forward, "fused MADF dynamic filter (algo: 0 auto, 1 simt, 2 tensor cores)");
    module.def("selected", &selected, "the algorithm forward would run for these inputs");
}
