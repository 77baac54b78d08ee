// madf::Engine on TensorRT (10.x / 11.x, or the lean runtime for version-compatible plans) and the CUDA runtime.
#include "madf/runtime.h"

#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <regex>
#include <sstream>

namespace madf
{
namespace
{

class Logger final : public nvinfer1::ILogger
{
public:
    void log(Severity severity, char const* message) noexcept override
    {
        if (severity <= Severity::kERROR)
            mLastError = message;
        else if (severity == Severity::kWARNING)
            std::cerr << "madf_runtime: TensorRT: " << message << "\n";
    }
    std::string lastError() const { return mLastError.empty() ? "no message from TensorRT" : mLastError; }

private:
    std::string mLastError;
};

void cudaCheck(cudaError_t status, char const* what)
{
    if (status != cudaSuccess)
        throw Error(ErrorCode::kCUDA, std::string(what) + " failed: " + cudaGetErrorName(status) + " ("
                + cudaGetErrorString(status) + ")");
}

std::string readFile(std::string const& path, char const* what)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw Error(ErrorCode::kFILE, path + ": cannot open " + what);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The sidecar is madf-build's own JSON; the runtime needs three scalar fields from it, read by pattern.
bool sidecarField(std::string const& sidecar, std::string const& key, std::string& value)
{
    std::smatch match;
    std::regex const pattern("\"" + key + "\"\\s*:\\s*(true|false|-?[0-9]+)");
    if (!std::regex_search(sidecar, match, pattern))
        return false;
    value = match[1];
    return true;
}

struct DeviceBuffer
{
    void* ptr{nullptr};
    size_t bytes{0};
    void ensure(size_t want)
    {
        if (want <= bytes)
            return;
        release();
        cudaCheck(cudaMalloc(&ptr, want), "cudaMalloc");
        bytes = want;
    }
    void release()
    {
        if (ptr)
            cudaFree(ptr);
        ptr = nullptr;
        bytes = 0;
    }
};

nvinfer1::Dims4 dims(int32_t n, int32_t c, int32_t h, int32_t w) { return nvinfer1::Dims4(n, c, h, w); }

} // namespace

struct Engine::Impl
{
    std::string path;
    Logger logger;
    std::unique_ptr<nvinfer1::IRuntime> runtime;
    std::unique_ptr<nvinfer1::ICudaEngine> engine;
    std::unique_ptr<nvinfer1::IExecutionContext> context;
    cudaStream_t stream{nullptr};
    DeviceBuffer image, mask, output;
    int32_t multiple{0};
    Profile profile;
    CropOptions crop;

    ~Impl()
    {
        context.reset();
        engine.reset();
        runtime.reset();
        image.release();
        mask.release();
        output.release();
        if (stream)
            cudaStreamDestroy(stream);
    }

    void run(float const* img, float const* msk, float* out, int32_t n, int32_t h, int32_t w)
    {
        size_t const plane = static_cast<size_t>(h) * w;
        if (!context->setInputShape("image", dims(n, 3, h, w)) || !context->setInputShape("mask", dims(n, 1, h, w)))
            throw Error(ErrorCode::kPROFILE, path + ": TensorRT refused shape " + std::to_string(n) + "x"
                    + std::to_string(h) + "x" + std::to_string(w) + " (" + logger.lastError() + ")");
        image.ensure(n * 3 * plane * sizeof(float));
        mask.ensure(n * plane * sizeof(float));
        output.ensure(n * 3 * plane * sizeof(float));
        context->setTensorAddress("image", image.ptr);
        context->setTensorAddress("mask", mask.ptr);
        context->setTensorAddress("inpainted", output.ptr);
        cudaCheck(cudaMemcpyAsync(image.ptr, img, n * 3 * plane * sizeof(float), cudaMemcpyHostToDevice, stream),
            "cudaMemcpyAsync (image)");
        cudaCheck(cudaMemcpyAsync(mask.ptr, msk, n * plane * sizeof(float), cudaMemcpyHostToDevice, stream),
            "cudaMemcpyAsync (mask)");
        if (!context->enqueueV3(stream))
            throw Error(ErrorCode::kCUDA, path + ": TensorRT execution failed (" + logger.lastError() + ")");
        cudaCheck(cudaMemcpyAsync(out, output.ptr, n * 3 * plane * sizeof(float), cudaMemcpyDeviceToHost, stream),
            "cudaMemcpyAsync (output)");
        cudaCheck(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    }
};

Engine::Engine(std::string const& planPath, EngineOptions const& options)
    : mImpl(std::make_unique<Impl>())
{
    Impl& m = *mImpl;
    m.path = planPath;
    m.crop = options.crop;
    std::string const plan = readFile(planPath, "the engine (build one with madf-build)");
    std::string sidecar;
    {
        std::ifstream in(planPath + ".json");
        if (in)
            sidecar.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    std::string field;
    if (sidecarField(sidecar, "bytes", field) && std::stoull(field) != plan.size())
        throw Error(ErrorCode::kFILE, planPath + " is " + std::to_string(plan.size()) + " bytes, its sidecar says "
                + field + ": the file is truncated or was replaced; copy it again or rebuild it with madf-build");
    m.multiple = options.multiple;
    if (m.multiple <= 0)
    {
        if (!sidecarField(sidecar, "multiple", field))
            throw Error(ErrorCode::kFILE, planPath + ".json (madf-build's sidecar) is missing or has no "
                                                    "\"multiple\"; copy it beside the plan or set EngineOptions::multiple");
        m.multiple = std::stoi(field);
    }
    bool const versionCompatible = sidecarField(sidecar, "version_compatible", field) && field == "true";

    int32_t devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0)
        throw Error(ErrorCode::kCUDA, "no CUDA GPU visible (or no NVIDIA driver): TensorRT engines need one");
    if (options.device < 0 || options.device >= devices)
        throw Error(ErrorCode::kCUDA, "CUDA device " + std::to_string(options.device) + " does not exist ("
                + std::to_string(devices) + " visible)");
    cudaCheck(cudaSetDevice(options.device), "cudaSetDevice");

    m.runtime.reset(nvinfer1::createInferRuntime(m.logger));
    if (!m.runtime)
        throw Error(ErrorCode::kENGINE, "could not create a TensorRT runtime (" + m.logger.lastError() + ")");
    for (std::string const& lib : options.pluginLibraries)
    {
        if (!std::ifstream(lib))
            throw Error(ErrorCode::kPLUGIN, "plugin library " + lib + " not found; build it with cmake -S "
                                            "madf/csrc -B build && cmake --build build");
        if (m.runtime->getPluginRegistry().loadLibrary(lib.c_str()) == nullptr)
            throw Error(ErrorCode::kPLUGIN, "TensorRT could not load plugin library " + lib + " ("
                    + m.logger.lastError() + "); was it built against this TensorRT version?");
    }
    if (versionCompatible)
        m.runtime->setEngineHostCodeAllowed(true);   // the plan carries its lean runtime / plugin code
    m.engine.reset(m.runtime->deserializeCudaEngine(plan.data(), plan.size()));
    if (!m.engine)
    {
        std::string const why = m.logger.lastError();
        bool const plugin = why.find("MADFDynamicFilter") != std::string::npos || why.find("lugin") != std::string::npos;
        throw Error(plugin ? ErrorCode::kPLUGIN : ErrorCode::kENGINE, planPath + ": TensorRT cannot deserialize it ("
                + why + ")" + (plugin ? "; pass the plugin library (EngineOptions::pluginLibraries)"
                                      : "; rebuild it with madf-build for this GPU and TensorRT version"));
    }
    std::map<std::string, nvinfer1::TensorIOMode> io;
    for (int32_t i = 0; i < m.engine->getNbIOTensors(); ++i)
    {
        char const* name = m.engine->getIOTensorName(i);
        io[name] = m.engine->getTensorIOMode(name);
    }
    if (io.size() != 3 || io.count("image") == 0 || io.count("mask") == 0 || io.count("inpainted") == 0
        || io["inpainted"] != nvinfer1::TensorIOMode::kOUTPUT)
        throw Error(ErrorCode::kENGINE, planPath + " is not a madf engine (image, mask -> inpainted)");
    for (char const* name : {"image", "mask", "inpainted"})
    {
        if (m.engine->getTensorDataType(name) != nvinfer1::DataType::kFLOAT)
            throw Error(ErrorCode::kENGINE, planPath + ": tensor " + name + " is not float32 (the madf contract)");
    }
    nvinfer1::Dims const lo = m.engine->getProfileShape("image", 0, nvinfer1::OptProfileSelector::kMIN);
    nvinfer1::Dims const hi = m.engine->getProfileShape("image", 0, nvinfer1::OptProfileSelector::kMAX);
    m.profile = Profile{static_cast<int32_t>(lo.d[0]), static_cast<int32_t>(hi.d[0]), static_cast<int32_t>(lo.d[2]),
        static_cast<int32_t>(hi.d[2]), static_cast<int32_t>(lo.d[3]), static_cast<int32_t>(hi.d[3])};
    m.context.reset(m.engine->createExecutionContext());
    if (!m.context)
        throw Error(ErrorCode::kCUDA, planPath + ": could not create an execution context (" + m.logger.lastError()
                + ")");
    cudaCheck(cudaStreamCreateWithFlags(&m.stream, cudaStreamNonBlocking), "cudaStreamCreate");
}

Engine::~Engine() = default;
Engine::Engine(Engine&&) noexcept = default;
Engine& Engine::operator=(Engine&&) noexcept = default;

int32_t Engine::multiple() const noexcept { return mImpl->multiple; }
Profile Engine::profile() const noexcept { return mImpl->profile; }
CUstream_st* Engine::stream() const noexcept { return mImpl->stream; }

void Engine::infer(float const* image, float const* mask, float* output, int32_t n, int32_t h, int32_t w)
{
    Impl& m = *mImpl;
    Profile const& p = m.profile;
    if (n <= 0 || h % m.multiple || w % m.multiple)
        throw Error(ErrorCode::kINVALID_INPUT, "infer wants n > 0 and h, w multiples of " + std::to_string(m.multiple)
                + "; got " + std::to_string(n) + "x" + std::to_string(h) + "x" + std::to_string(w));
    if (h < p.minHeight || h > p.maxHeight || w < p.minWidth || w > p.maxWidth)
        throw Error(ErrorCode::kPROFILE, std::to_string(h) + "x" + std::to_string(w) + " (HxW) is outside "
                + m.path + "'s profile " + std::to_string(p.minHeight) + "x" + std::to_string(p.minWidth) + ".."
                + std::to_string(p.maxHeight) + "x" + std::to_string(p.maxWidth) + "; rebuild it with madf-build --max "
                + std::to_string(p.maxBatch) + "x" + std::to_string(std::max(h, p.maxHeight)) + "x"
                + std::to_string(std::max(w, p.maxWidth)));
    size_t const plane = static_cast<size_t>(h) * w;
    std::vector<float> padImage, padMask, padOut;
    for (int32_t start = 0; start < n; start += p.maxBatch)
    {
        int32_t const count = std::min(p.maxBatch, n - start);
        float const* img = image + start * 3 * plane;
        float const* msk = mask + start * plane;
        float* out = output + start * 3 * plane;
        if (count >= p.minBatch)
        {
            m.run(img, msk, out, count, h, w);
            continue;
        }
        // below the profile's min batch: repeat the first item, keep the real results
        int32_t const padded = p.minBatch;
        padImage.resize(padded * 3 * plane);
        padMask.resize(padded * plane);
        padOut.resize(padded * 3 * plane);
        for (int32_t i = 0; i < padded; ++i)
        {
            int32_t const src = i < count ? i : 0;
            std::memcpy(&padImage[i * 3 * plane], img + src * 3 * plane, 3 * plane * sizeof(float));
            std::memcpy(&padMask[i * plane], msk + src * plane, plane * sizeof(float));
        }
        m.run(padImage.data(), padMask.data(), padOut.data(), padded, h, w);
        std::memcpy(out, padOut.data(), count * 3 * plane * sizeof(float));
    }
}

std::vector<ImageU8> Engine::inpaint(std::vector<ImageU8> const& images, std::vector<MaskU8> const& masks)
{
    if (images.size() != masks.size())
        throw Error(ErrorCode::kINVALID_INPUT, std::to_string(images.size()) + " images but "
                + std::to_string(masks.size()) + " masks");
    // What the network sees: whole images, or crops around the holes of large ones (CropOptions), as Python's
    // Inpainter does; the profile's largest size caps the crops.
    struct Piece
    {
        size_t image;
        imaging::Box box;
        ImageU8 rgb;
        MaskU8 hole;
    };
    CropOptions const& crop = mImpl->crop;
    Profile const& p = profile();
    int32_t const limit = std::max(multiple(), std::min(p.maxHeight, p.maxWidth) / multiple() * multiple());
    std::vector<ImageU8> results;
    std::vector<Piece> pieces;
    for (size_t i = 0; i < images.size(); ++i)
    {
        imaging::checkPair(images[i], masks[i]);
        results.push_back(images[i]);
        ImageU8 const& img = images[i];
        if (std::none_of(masks[i].values.begin(), masks[i].values.end(), [](uint8_t v) { return v != 0; }))
            continue;   // nothing to fill
        bool const large = std::max(img.height, img.width) > crop.trigger
            || imaging::paddedSize(img.height, multiple()) > p.maxHeight
            || imaging::paddedSize(img.width, multiple()) > p.maxWidth;
        if (!crop.enabled || !large)
        {
            pieces.push_back({i, {0, 0, img.height, img.width}, img, masks[i]});
            continue;
        }
        for (imaging::Box const& box : imaging::cropBoxes(masks[i], multiple(), crop.margin, std::min(crop.maxSide, limit)))
            pieces.push_back({i, box, imaging::crop(img, box), imaging::crop(masks[i], box)});
    }
    auto padded = [&](Piece const& piece) {
        return std::make_pair(imaging::paddedSize(piece.rgb.height, multiple()),
            imaging::paddedSize(piece.rgb.width, multiple()));
    };
    std::stable_sort(pieces.begin(), pieces.end(), [&](Piece const& a, Piece const& b) { return padded(a) < padded(b); });
    std::vector<ImageU8> rgbs;
    std::vector<MaskU8> holes;
    std::vector<float> image, mask, output;
    size_t start = 0;
    while (start < pieces.size())
    {
        size_t end = start + 1;   // pieces of one padded size run together
        while (end < pieces.size() && padded(pieces[end]) == padded(pieces[start]))
            ++end;
        rgbs.clear(), holes.clear();
        for (size_t k = start; k < end; ++k)
            rgbs.push_back(pieces[k].rgb), holes.push_back(pieces[k].hole);
        int32_t h = 0, w = 0;
        int32_t const count = static_cast<int32_t>(end - start);
        imaging::toContract(rgbs.data(), holes.data(), count, multiple(), image, mask, h, w);
        output.resize(image.size());
        infer(image.data(), mask.data(), output.data(), count, h, w);
        for (int32_t k = 0; k < count; ++k)
        {
            Piece const& piece = pieces[start + k];
            ImageU8 const filled = imaging::fromContract(output.data(), k, h, w, piece.rgb, piece.hole);
            imaging::pasteHoles(results[piece.image], filled, masks[piece.image], piece.box);
        }
        start = end;
    }
    return results;
}

Status createEngine(std::string const& planPath, EngineOptions const& options, std::unique_ptr<Engine>& engine) noexcept
{
    try
    {
        engine = std::make_unique<Engine>(planPath, options);
        return {};
    }
    catch (Error const& e)
    {
        return {e.code(), e.what()};
    }
    catch (std::exception const& e)
    {
        return {ErrorCode::kENGINE, e.what()};
    }
}

Status inpaintNoThrow(Engine& engine, std::vector<ImageU8> const& images, std::vector<MaskU8> const& masks,
    std::vector<ImageU8>& results) noexcept
{
    try
    {
        results = engine.inpaint(images, masks);
        return {};
    }
    catch (Error const& e)
    {
        return {e.code(), e.what()};
    }
    catch (std::exception const& e)
    {
        return {ErrorCode::kCUDA, e.what()};
    }
}

} // namespace madf
