// madf::Engine on TensorRT (10.x / 11.x, or the lean runtime for version-compatible plans) and the CUDA runtime.
#include "madf/runtime.h"

#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <atomic>
#include <map>
#include <mutex>
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
        if (severity <= Severity::kWARNING)
            std::cerr << "madf_runtime: TensorRT: " << message << "\n";
    }
};

// TensorRT's errors, recorded per Engine (its runtime and context report here, from whichever thread they run on):
// a failed call is explained by the newest recorded error, never by scraping log text.
class ErrorRecorder final : public nvinfer1::IErrorRecorder
{
public:
    int32_t getNbErrors() const noexcept override
    {
        std::lock_guard<std::mutex> const lock(mMutex);
        return static_cast<int32_t>(mErrors.size());
    }
    nvinfer1::ErrorCode getErrorCode(int32_t index) const noexcept override
    {
        std::lock_guard<std::mutex> const lock(mMutex);
        return index >= 0 && index < static_cast<int32_t>(mErrors.size()) ? mErrors[index].first
                                                                          : nvinfer1::ErrorCode::kINVALID_ARGUMENT;
    }
    ErrorDesc getErrorDesc(int32_t index) const noexcept override
    {
        std::lock_guard<std::mutex> const lock(mMutex);
        return index >= 0 && index < static_cast<int32_t>(mErrors.size()) ? mErrors[index].second.c_str() : "";
    }
    bool hasOverflowed() const noexcept override { return false; }
    void clear() noexcept override
    {
        std::lock_guard<std::mutex> const lock(mMutex);
        mErrors.clear();
    }
    bool reportError(nvinfer1::ErrorCode code, ErrorDesc desc) noexcept override
    {
        try
        {
            std::lock_guard<std::mutex> const lock(mMutex);
            if (mErrors.size() == kKept)
                mErrors.erase(mErrors.begin());
            mErrors.emplace_back(code, desc ? desc : "");
        }
        catch (...)
        {
        }
        return false;   // not fatal to TensorRT: the failing call returns and madf throws with the text
    }
    RefCount incRefCount() noexcept override { return ++mRefs; }
    RefCount decRefCount() noexcept override { return --mRefs; }

    // The newest error, for a one-line message.
    std::string lastError() const
    {
        std::lock_guard<std::mutex> const lock(mMutex);
        return mErrors.empty() ? "no error recorded by TensorRT" : mErrors.back().second;
    }

private:
    static constexpr size_t kKept = 16;
    mutable std::mutex mMutex;
    std::vector<std::pair<nvinfer1::ErrorCode, std::string>> mErrors;
    std::atomic<RefCount> mRefs{0};
};

void cudaCheck(cudaError_t status, char const* what)
{
    if (status != cudaSuccess)
        throw Error(ErrorCode::kCUDA,
            std::string(what) + " failed: " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")");
}

std::string readFile(std::string const& path, char const* what)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw Error(ErrorCode::kFILE, path + ": cannot open " + what);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string tensorrtVersion()
{
    int32_t const v = getInferLibVersion();   // major * 10000 + minor * 100 + patch
    return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

// The CUDA runtime's current device is per thread: every entry of an Engine makes its device current on the
// calling thread and gives the thread its own back on the way out (as madf.runtime.cuda.on_device does in Python).
class DeviceGuard
{
public:
    explicit DeviceGuard(int32_t device)
        : mDevice(device)
    {
        cudaCheck(cudaGetDevice(&mBefore), "cudaGetDevice");
        if (mBefore != mDevice)
            cudaCheck(cudaSetDevice(mDevice), "cudaSetDevice");
    }
    ~DeviceGuard()
    {
        if (mBefore != mDevice)
            cudaSetDevice(mBefore);   // no throw from a destructor; the next call's checks report a broken device
    }
    DeviceGuard(DeviceGuard const&) = delete;
    DeviceGuard& operator=(DeviceGuard const&) = delete;

private:
    int32_t mDevice;
    int32_t mBefore{0};
};

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

}   // namespace

struct Engine::Impl
{
    std::string path;
    int32_t device{0};
    Logger logger;
    ErrorRecorder errors;   // declared before the runtime and context that report into it, so it outlives them
    std::unique_ptr<nvinfer1::IRuntime> runtime;
    std::unique_ptr<nvinfer1::ICudaEngine> engine;
    std::unique_ptr<nvinfer1::IExecutionContext> context;
    cudaStream_t stream{nullptr};
    DeviceBuffer image, mask, output;
    int32_t multiple{0};
    bool uint8Io{false};        // NHWC uint8 tensors (madf-export --io uint8), else the NCHW float contract
    bool maskInverted{false};   // a uint8 file's masks: 255 = keep
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

    size_t element() const { return uint8Io ? 1 : sizeof(float); }
    nvinfer1::Dims4 dims(int32_t n, int32_t c, int32_t h, int32_t w) const
    {
        return uint8Io ? nvinfer1::Dims4(n, h, w, c) : nvinfer1::Dims4(n, c, h, w);
    }

    void checkProfile(int32_t h, int32_t w) const
    {
        Profile const& p = profile;
        if (h < p.minHeight || h > p.maxHeight || w < p.minWidth || w > p.maxWidth)
            throw Error(ErrorCode::kPROFILE,
                std::to_string(h) + "x" + std::to_string(w) + " (HxW) is outside " + path + "'s profile "
                    + std::to_string(p.minHeight) + "x" + std::to_string(p.minWidth) + ".."
                    + std::to_string(p.maxHeight) + "x" + std::to_string(p.maxWidth) + "; rebuild it with madf-build "
                    + "--max " + std::to_string(p.maxBatch) + "x" + std::to_string(std::max(h, p.maxHeight)) + "x"
                    + std::to_string(std::max(w, p.maxWidth)));
    }

    void run(void const* img, void const* msk, void* out, int32_t n, int32_t h, int32_t w)
    {
        size_t const plane = static_cast<size_t>(h) * w * element();
        if (!context->setInputShape("image", dims(n, 3, h, w)) || !context->setInputShape("mask", dims(n, 1, h, w)))
            throw Error(ErrorCode::kPROFILE,
                path + ": TensorRT refused shape " + std::to_string(n) + "x" + std::to_string(h) + "x"
                    + std::to_string(w) + " (" + errors.lastError() + ")");
        image.ensure(n * 3 * plane);
        mask.ensure(n * plane);
        output.ensure(n * 3 * plane);
        context->setTensorAddress("image", image.ptr);
        context->setTensorAddress("mask", mask.ptr);
        context->setTensorAddress("inpainted", output.ptr);
        cudaCheck(
            cudaMemcpyAsync(image.ptr, img, n * 3 * plane, cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync (image)");
        cudaCheck(cudaMemcpyAsync(mask.ptr, msk, n * plane, cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync (mask)");
        if (!context->enqueueV3(stream))
            throw Error(ErrorCode::kCUDA, path + ": TensorRT execution failed (" + errors.lastError() + ")");
        cudaCheck(cudaMemcpyAsync(out, output.ptr, n * 3 * plane, cudaMemcpyDeviceToHost, stream),
            "cudaMemcpyAsync (output)");
        cudaCheck(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    }

    // Profile-sized batches: larger n split, a batch below the profile's min padded with copies of its first item.
    void batched(uint8_t const* img, uint8_t const* msk, uint8_t* out, int32_t n, int32_t h, int32_t w)
    {
        DeviceGuard const guard(device);
        size_t const plane = static_cast<size_t>(h) * w * element();
        std::vector<uint8_t> padImage, padMask, padOut;
        for (int32_t start = 0; start < n; start += profile.maxBatch)
        {
            int32_t const count = std::min(profile.maxBatch, n - start);
            uint8_t const* i0 = img + start * 3 * plane;
            uint8_t const* m0 = msk + start * plane;
            uint8_t* o0 = out + start * 3 * plane;
            if (count >= profile.minBatch)
            {
                run(i0, m0, o0, count, h, w);
                continue;
            }
            int32_t const padded = profile.minBatch;
            padImage.resize(padded * 3 * plane);
            padMask.resize(padded * plane);
            padOut.resize(padded * 3 * plane);
            for (int32_t i = 0; i < padded; ++i)
            {
                int32_t const src = i < count ? i : 0;
                std::memcpy(&padImage[i * 3 * plane], i0 + src * 3 * plane, 3 * plane);
                std::memcpy(&padMask[i * plane], m0 + src * plane, plane);
            }
            run(padImage.data(), padMask.data(), padOut.data(), padded, h, w);
            std::memcpy(o0, padOut.data(), count * 3 * plane);
        }
    }
};

Engine::Engine(std::string const& planPath, EngineOptions const& options)
    : mImpl(std::make_unique<Impl>())
{
    Impl& m = *mImpl;
    m.path = planPath;
    m.crop = options.crop;
    std::string const plan = readFile(planPath, "the engine (build one with madf-build)");
    // the Python runtime's checks, message for message (madf/engines/sidecar.py; src/sidecar.cpp)
    sidecar::Sidecar const side = sidecar::read(planPath);
    sidecar::checkPlan(planPath, side, plan);
#if MADF_RUNTIME_LEAN
    sidecar::checkVersion(planPath, side, tensorrtVersion(), "lean");
#else
    sidecar::checkVersion(planPath, side, tensorrtVersion(), "tensorrt");
#endif
    if (options.multiple != 0)
        imaging::checkMultiple(options.multiple, "EngineOptions::multiple");
    m.multiple = options.multiple != 0 ? options.multiple : side.multiple;
    bool const versionCompatible = side.versionCompatible;

    int32_t devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0)
        throw Error(ErrorCode::kCUDA, "no CUDA GPU visible (or no NVIDIA driver): TensorRT engines need one");
    if (options.device < 0 || options.device >= devices)
        throw Error(ErrorCode::kCUDA,
            "CUDA device " + std::to_string(options.device) + " does not exist (" + std::to_string(devices)
                + " visible)");
    m.device = options.device;
    DeviceGuard const guard(m.device);   // the runtime, context, stream and buffers on this GPU
    cudaDeviceProp props{};
    cudaCheck(cudaGetDeviceProperties(&props, m.device), "cudaGetDeviceProperties");
    sidecar::checkGpu(planPath, side, props.name, std::to_string(props.major) + "." + std::to_string(props.minor));

    m.runtime.reset(nvinfer1::createInferRuntime(m.logger));
    if (!m.runtime)
        throw Error(ErrorCode::kENGINE, "could not create a TensorRT runtime (" + m.errors.lastError() + ")");
    m.runtime->setErrorRecorder(&m.errors);
    // The plugin library a plugin or mixed plan needs, from its sidecar (as madf.runtime.tensorrt.check_plugins)
    if ((side.lowering == "plugin" || side.lowering == "mixed") && options.pluginLibraries.empty()
        && !side.pluginsCarried)
        throw Error(ErrorCode::kPLUGIN,
            planPath + " uses the MADFDynamicFilter plugin (" + side.lowering
                + " lowering): pass the plugin library (EngineOptions::pluginLibraries, "
                  "build/plugins/libmadf_plugins.so built with cmake -S madf/csrc -B build)");
    for (std::string const& lib : options.pluginLibraries)
    {
        if (!std::ifstream(lib))
            throw Error(ErrorCode::kPLUGIN,
                "plugin library " + lib
                    + " not found; build it with cmake -S "
                      "madf/csrc -B build && cmake --build build");
        if (m.runtime->getPluginRegistry().loadLibrary(lib.c_str()) == nullptr)
            throw Error(ErrorCode::kPLUGIN,
                "TensorRT could not load plugin library " + lib + " (" + m.errors.lastError()
                    + "); was it built against this TensorRT version?");
    }
    if (versionCompatible)
        m.runtime->setEngineHostCodeAllowed(true);   // the plan carries its lean runtime / plugin code
    m.engine.reset(m.runtime->deserializeCudaEngine(plan.data(), plan.size()));
    if (!m.engine)
        throw Error(ErrorCode::kENGINE,
            planPath + ": TensorRT cannot deserialize it (" + m.errors.lastError()
                + "); rebuild it with madf-build for this GPU and TensorRT version");
    std::map<std::string, nvinfer1::TensorIOMode> io;
    for (int32_t i = 0; i < m.engine->getNbIOTensors(); ++i)
    {
        char const* name = m.engine->getIOTensorName(i);
        io[name] = m.engine->getTensorIOMode(name);
    }
    if (io.size() != 3 || io.count("image") == 0 || io.count("mask") == 0 || io.count("inpainted") == 0
        || io["inpainted"] != nvinfer1::TensorIOMode::kOUTPUT)
        throw Error(ErrorCode::kENGINE, planPath + " is not a madf engine (image, mask -> inpainted)");
    // The float contract, or the uint8 shell: all three tensors of one kind.
    m.uint8Io = m.engine->getTensorDataType("image") == nvinfer1::DataType::kUINT8;
    nvinfer1::DataType const wanted = m.uint8Io ? nvinfer1::DataType::kUINT8 : nvinfer1::DataType::kFLOAT;
    for (char const* name : {"image", "mask", "inpainted"})
    {
        if (m.engine->getTensorDataType(name) != wanted)
            throw Error(ErrorCode::kENGINE,
                planPath + ": tensor " + name + " is not " + (m.uint8Io ? "uint8 like the image" : "float32")
                    + " (the madf contract)");
    }
    m.maskInverted = m.uint8Io && side.mask == "inverted";
    nvinfer1::Dims const lo = m.engine->getProfileShape("image", 0, nvinfer1::OptProfileSelector::kMIN);
    nvinfer1::Dims const hi = m.engine->getProfileShape("image", 0, nvinfer1::OptProfileSelector::kMAX);
    int32_t const hAxis = m.uint8Io ? 1 : 2;   // NHWC or NCHW
    m.profile = Profile{static_cast<int32_t>(lo.d[0]), static_cast<int32_t>(hi.d[0]), static_cast<int32_t>(lo.d[hAxis]),
        static_cast<int32_t>(hi.d[hAxis]), static_cast<int32_t>(lo.d[hAxis + 1]),
        static_cast<int32_t>(hi.d[hAxis + 1])};
    m.context.reset(m.engine->createExecutionContext());
    if (!m.context)
        throw Error(
            ErrorCode::kCUDA, planPath + ": could not create an execution context (" + m.errors.lastError() + ")");
    cudaCheck(cudaStreamCreateWithFlags(&m.stream, cudaStreamNonBlocking), "cudaStreamCreate");
}

Engine::~Engine() = default;
Engine::Engine(Engine&&) noexcept = default;
Engine& Engine::operator=(Engine&&) noexcept = default;

int32_t Engine::multiple() const noexcept { return mImpl->multiple; }
Profile Engine::profile() const noexcept { return mImpl->profile; }
CUstream_st* Engine::stream() const noexcept { return mImpl->stream; }

bool Engine::uint8Io() const noexcept { return mImpl->uint8Io; }
bool Engine::maskInverted() const noexcept { return mImpl->maskInverted; }

void Engine::infer(float const* image, float const* mask, float* output, int32_t n, int32_t h, int32_t w)
{
    Impl& m = *mImpl;
    if (m.uint8Io)
        throw Error(ErrorCode::kINVALID_INPUT,
            m.path
                + " is a uint8 engine (madf-export --io uint8): call inferU8 "
                  "or inpaint");
    if (n <= 0 || h % m.multiple || w % m.multiple)
        throw Error(ErrorCode::kINVALID_INPUT,
            "infer wants n > 0 and h, w multiples of " + std::to_string(m.multiple) + "; got " + std::to_string(n) + "x"
                + std::to_string(h) + "x" + std::to_string(w));
    m.checkProfile(h, w);
    m.batched(reinterpret_cast<uint8_t const*>(image), reinterpret_cast<uint8_t const*>(mask),
        reinterpret_cast<uint8_t*>(output), n, h, w);
}

void Engine::inferU8(uint8_t const* image, uint8_t const* mask, uint8_t* output, int32_t n, int32_t h, int32_t w)
{
    Impl& m = *mImpl;
    if (!m.uint8Io)
        throw Error(ErrorCode::kINVALID_INPUT,
            m.path
                + " takes the float contract: call infer or inpaint (or build "
                  "the engine from madf-export --io uint8)");
    if (n <= 0 || h <= 0 || w <= 0)
        throw Error(ErrorCode::kINVALID_INPUT,
            "inferU8 wants n, h, w > 0; got " + std::to_string(n) + "x" + std::to_string(h) + "x" + std::to_string(w));
    m.checkProfile(h, w);
    m.batched(image, mask, output, n, h, w);
}

std::vector<ImageU8> Engine::inpaint(std::vector<ImageU8> const& images, std::vector<MaskU8> const& masks)
{
    if (images.size() != masks.size())
        throw Error(ErrorCode::kINVALID_INPUT,
            std::to_string(images.size()) + " images but " + std::to_string(masks.size()) + " masks");
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
        for (imaging::Box const& box :
            imaging::cropBoxes(masks[i], multiple(), crop.margin, std::min(crop.maxSide, limit)))
            pieces.push_back({i, box, imaging::crop(img, box), imaging::crop(masks[i], box)});
    }
    bool const u8 = uint8Io();   // a uint8 engine pads in its graph: pieces of one exact size run together
    auto padded = [&](Piece const& piece) {
        if (u8)
            return std::make_pair(piece.rgb.height, piece.rgb.width);
        return std::make_pair(
            imaging::paddedSize(piece.rgb.height, multiple()), imaging::paddedSize(piece.rgb.width, multiple()));
    };
    std::stable_sort(
        pieces.begin(), pieces.end(), [&](Piece const& a, Piece const& b) { return padded(a) < padded(b); });
    std::vector<ImageU8> rgbs;
    std::vector<MaskU8> holes;
    std::vector<float> image, mask, output;
    std::vector<uint8_t> imageU8, maskU8, outputU8;
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
        if (u8)   // the engine pads, crops and composites: the pieces' bytes as they are
        {
            imaging::toUint8Batch(rgbs.data(), holes.data(), count, maskInverted(), imageU8, maskU8);
            outputU8.resize(imageU8.size());
            inferU8(imageU8.data(), maskU8.data(), outputU8.data(), count, rgbs[0].height, rgbs[0].width);
        }
        else
        {
            imaging::toContract(rgbs.data(), holes.data(), count, multiple(), image, mask, h, w);
            output.resize(image.size());
            infer(image.data(), mask.data(), output.data(), count, h, w);
        }
        for (int32_t k = 0; k < count; ++k)
        {
            Piece const& piece = pieces[start + k];
            ImageU8 const filled = u8 ? imaging::fromUint8Batch(outputU8.data(), k, piece.rgb, piece.hole)
                                      : imaging::fromContract(output.data(), k, h, w, piece.rgb, piece.hole);
            imaging::pasteHoles(results[piece.image], filled, masks[piece.image], piece.box);
        }
        start = end;
    }
    return results;
}

namespace
{
// The one mapping of what a call threw to a Status: madf's own errors keep their code; running out of host memory
// is kCUDA's kind (resources); anything else is unexpected and reported as kENGINE with its text.
Status toStatus(std::exception_ptr thrown) noexcept
{
    try
    {
        std::rethrow_exception(thrown);
    }
    catch (Error const& e)
    {
        return {e.code(), e.what()};
    }
    catch (std::bad_alloc const&)
    {
        return {ErrorCode::kCUDA, "out of host memory"};
    }
    catch (std::exception const& e)
    {
        return {ErrorCode::kENGINE, std::string("unexpected error: ") + e.what()};
    }
    catch (...)
    {
        return {ErrorCode::kENGINE, "unexpected error of an unknown type"};
    }
}
}   // namespace

Status createEngine(std::string const& planPath, EngineOptions const& options, std::unique_ptr<Engine>& engine) noexcept
{
    try
    {
        engine = std::make_unique<Engine>(planPath, options);
        return {};
    }
    catch (...)
    {
        return toStatus(std::current_exception());
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
    catch (...)
    {
        return toStatus(std::current_exception());
    }
}

}   // namespace madf
