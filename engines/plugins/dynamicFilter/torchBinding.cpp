// The fused kernel bound into a small torch extension, so tests and benchmarks run the exact launch function the
// TensorRT plugin's enqueue calls (madf/engines/kernel.py builds it on first use).
#include <torch/extension.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>

#include "dynamicFilterKernel.cuh"

namespace
{

madfDynamicFilterShape shapeOf(torch::Tensor const& x, torch::Tensor const& m, torch::Tensor const& weight,
    int64_t kernelSize, int64_t stride, int64_t padding)
{
    TORCH_CHECK(x.dim() == 4 && m.dim() == 4, "features and mask_features must be 4-D (N, C, H, W)");
    int64_t const window = x.size(1) * kernelSize * kernelSize;
    TORCH_CHECK(weight.dim() == 4 && weight.size(0) % window == 0,
        "weight must be (Cin*k*k*Cout, Cm, 1, 1); got first dim ", weight.size(0), " for Cin*k*k = ", window);
    madfDynamicFilterShape s{};
    s.batch = static_cast<int32_t>(x.size(0));
    s.inChannels = static_cast<int32_t>(x.size(1));
    s.height = static_cast<int32_t>(x.size(2));
    s.width = static_cast<int32_t>(x.size(3));
    s.maskChannels = static_cast<int32_t>(m.size(1));
    s.outChannels = static_cast<int32_t>(weight.size(0) / window);
    s.kernelSize = static_cast<int32_t>(kernelSize);
    s.stride = static_cast<int32_t>(stride);
    s.padding = static_cast<int32_t>(padding);
    char const* problem = madfDynamicFilterCheck(&s);
    TORCH_CHECK(problem == nullptr, problem);
    TORCH_CHECK(weight.size(1) == s.maskChannels, "weight takes ", weight.size(1), " mask channels, m has ",
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
    TORCH_CHECK(x.scalar_type() == torch::kFloat16, "the fused dynamic filter takes float32 or float16, not ",
        x.scalar_type());
    return MADF_FLOAT16;
}

} // namespace

torch::Tensor forward(torch::Tensor x, torch::Tensor m, torch::Tensor weight, torch::Tensor bias, int64_t kernelSize,
    int64_t stride, int64_t padding, int64_t algo)
{
    for (auto const* t : {&x, &m, &weight, &bias})
    {
        TORCH_CHECK(t->is_cuda(), "the fused dynamic filter runs on CUDA tensors");
        TORCH_CHECK(t->scalar_type() == x.scalar_type(), "all inputs must share one dtype");
    }
    madfDynamicFilterShape const s = shapeOf(x, m, weight, kernelSize, stride, padding);
    c10::cuda::CUDAGuard guard(x.device());
    auto xc = x.contiguous(), mc = m.contiguous(), wc = weight.contiguous(), bc = bias.contiguous();
    auto y = torch::empty({s.batch, s.outChannels, m.size(2), m.size(3)}, x.options());
    cudaError_t const err = madfDynamicFilterForward(&s, dtypeOf(x), static_cast<madfAlgo>(algo), xc.data_ptr(),
        mc.data_ptr(), wc.data_ptr(), bc.data_ptr(), y.data_ptr(), c10::cuda::getCurrentCUDAStream().stream());
    TORCH_CHECK(err == cudaSuccess, "MADFDynamicFilter launch failed: ", cudaGetErrorString(err));
    return y;
}

std::string selected(torch::Tensor x, torch::Tensor m, torch::Tensor weight, int64_t kernelSize, int64_t stride,
    int64_t padding, int64_t algo)
{
    madfDynamicFilterShape const s = shapeOf(x, m, weight, kernelSize, stride, padding);
    return madfDynamicFilterSelect(&s, dtypeOf(x), static_cast<madfAlgo>(algo)) == MADF_ALGO_TENSOR_CORE
        ? "tensor_core"
        : "simt";
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module)
{
    module.def("forward", &forward, "fused MADF dynamic filter (algo: 0 auto, 1 simt, 2 tensor cores)");
    module.def("selected", &selected, "the algorithm forward would run for these inputs");
}
