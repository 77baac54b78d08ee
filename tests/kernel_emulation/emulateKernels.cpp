// Runs the fused dynamic-filter kernels of engines/plugins/dynamicFilter on the CPU (emulate.h), unchanged.
//   emulate_kernels ALGO DTYPE N CIN H W CM COUT K STRIDE PAD x.bin m.bin weight.bin bias.bin out.bin
// ALGO: simt | tensor_core; DTYPE: fp32 | fp16. Inputs are float32 files (FP16 runs round them to half first, as a
// GPU caller would pass half data); the output is written as float32. tests/test_kernel_emulation.py drives it.
#include "emulate.h"

#define MADF_EMULATE 1
#include "dynamicFilterKernel.cu"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

namespace
{
std::vector<float> readFloats(char const* path, size_t count)
{
    std::vector<float> v(count);
    std::ifstream in(path, std::ios::binary);
    in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(count * sizeof(float)));
    if (!in)
    {
        std::fprintf(stderr, "cannot read %zu floats from %s\n", count, path);
        std::exit(2);
    }
    return v;
}

std::vector<__half> toHalf(std::vector<float> const& v)
{
    std::vector<__half> h(v.size());
    for (size_t i = 0; i < v.size(); ++i)
        h[i] = __float2half_rn(v[i]);
    return h;
}

template <typename T>
std::vector<float> run(std::string const& algo, Geometry const& g, std::vector<T> const& x, std::vector<T> const& m,
    std::vector<T> const& w, std::vector<T> const& b)
{
    std::vector<T> y(static_cast<size_t>(g.pixels) * g.cout, T(-7.0f));   // poisoned: every output must be written
    if (algo == "simt")
    {
        emulate::launch(simtGrid(g), dim3(kSimtThreads), madfDynamicFilterSimtSharedBytes(g.cm),
            [&] { simtKernel<T>(g, x.data(), m.data(), w.data(), b.data(), y.data()); });
    }
    else if constexpr (std::is_same<T, __half>::value)
    {
        emulate::launch(tensorCoreGrid(g), dim3(32 * kTcWarps), 0,
            [&] { tensorCoreKernel(g, x.data(), m.data(), w.data(), b.data(), y.data()); });
    }
    std::vector<float> out(y.size());
    for (size_t i = 0; i < y.size(); ++i)
        out[i] = static_cast<float>(y[i]);
    return out;
}
} // namespace

int main(int argc, char** argv)
{
    if (argc != 17)
    {
        std::fprintf(stderr, "usage: emulate_kernels ALGO DTYPE N CIN H W CM COUT K STRIDE PAD x m weight bias out\n");
        return 2;
    }
    std::string const algo = argv[1], dtype = argv[2];
    madfDynamicFilterShape s{};
    s.batch = std::atoi(argv[3]);
    s.inChannels = std::atoi(argv[4]);
    s.height = std::atoi(argv[5]);
    s.width = std::atoi(argv[6]);
    s.maskChannels = std::atoi(argv[7]);
    s.outChannels = std::atoi(argv[8]);
    s.kernelSize = std::atoi(argv[9]);
    s.stride = std::atoi(argv[10]);
    s.padding = std::atoi(argv[11]);
    if (char const* problem = madfDynamicFilterCheck(&s))
    {
        std::fprintf(stderr, "%s\n", problem);
        return 2;
    }
    if (algo != "simt" && (algo != "tensor_core" || dtype != "fp16" || s.maskChannels + 1 > kTcMaxC1))
    {
        std::fprintf(stderr, "the tensor-core kernel takes fp16 data and at most %d mask channels\n", kTcMaxC1 - 1);
        return 2;
    }
    if (dtype != "fp32" && dtype != "fp16")
    {
        std::fprintf(stderr, "DTYPE is fp32 or fp16\n");
        return 2;
    }
    Geometry const g = geometry(s);
    size_t const window = static_cast<size_t>(g.window);
    std::vector<float> x = readFloats(argv[12], static_cast<size_t>(g.n) * g.cin * g.h * g.w);
    std::vector<float> m = readFloats(argv[13], static_cast<size_t>(g.pixels) * g.cm);
    std::vector<float> w = readFloats(argv[14], window * g.cout * g.cm);
    std::vector<float> b = readFloats(argv[15], window * g.cout);
    std::vector<float> y = dtype == "fp16" ? run(algo, g, toHalf(x), toHalf(m), toHalf(w), toHalf(b))
                                           : run(algo, g, x, m, w, b);
    std::ofstream(argv[16], std::ios::binary)
        .write(reinterpret_cast<char const*>(y.data()), static_cast<std::streamsize>(y.size() * sizeof(float)));
    return 0;
}
