/*
 * madf_runtime: run MADF inpainting engines (TensorRT plans from madf-build) from C++ with no Python.
 *
 *     madf::Engine engine("places2.plan", {{"build/plugins/libmadf_plugins.so"}});
 *     std::vector<madf::ImageU8> out = engine.inpaint({image}, {mask});   // any size: padded, batched, cropped back
 *
 * The image-level contract is the Python runtime's: 8-bit RGB in, hole mask (nonzero = hole) in, 8-bit RGB out with
 * known pixels copied through. Engines of both kinds of ONNX file run: float ones (this library pads, crops and
 * composites) and uint8 ones (madf-export --io uint8: the engine does it all, any size, a quarter of the bytes). Errors throw madf::Error (with a code and a one-line message naming the fix); the
 * *NoThrow functions return a madf::Status instead, for code built without exceptions at its boundary.
 */
#ifndef MADF_RUNTIME_H
#define MADF_RUNTIME_H

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

struct CUstream_st;

namespace madf
{

enum class ErrorCode : int32_t
{
    kOK = 0,
    kINVALID_INPUT = 1,   // sizes, masks, or arguments the call cannot use
    kFILE = 2,            // missing, unreadable, truncated files
    kENGINE = 3,          // TensorRT refused the plan (corrupt, other TensorRT version or GPU), or not a madf plan
    kPLUGIN = 4,          // the plugin library is missing or could not be loaded
    kCUDA = 5,            // no GPU, out of memory, a failed launch
    kPROFILE = 6,         // input shape outside the engine's optimization profile
};

class Error : public std::runtime_error
{
public:
    Error(ErrorCode code, std::string const& message)
        : std::runtime_error(message)
        , mCode(code)
    {
    }
    ErrorCode code() const noexcept { return mCode; }

private:
    ErrorCode mCode;
};

struct Status
{
    ErrorCode code{ErrorCode::kOK};
    std::string message;
    bool ok() const noexcept { return code == ErrorCode::kOK; }
};

// Row-major interleaved 8-bit RGB, height x width x 3.
struct ImageU8
{
    int32_t width{0};
    int32_t height{0};
    std::vector<uint8_t> pixels;
};

// Row-major height x width; nonzero = hole (to fill), zero = known.
struct MaskU8
{
    int32_t width{0};
    int32_t height{0};
    std::vector<uint8_t> values;
};

// Large photos are inpainted in crops around their holes (madf/inpaint/strategy.py's "crop"): photos whose longer side is
// above `trigger`, or whose padded size is beyond the engine's profile, go through boxes grown by `margin` around each
// connected hole region, merged where they overlap, rounded to the multiple and capped at `maxSide` (and at the
// profile). Only hole pixels are pasted back.
struct CropOptions
{
    bool enabled{true};
    int32_t trigger{800};
    int32_t margin{128};
    int32_t maxSide{1024};
};

struct EngineOptions
{
    std::vector<std::string> pluginLibraries;   // libmadf_plugins.so for plugin-lowered plans
    int32_t device{0};                          // CUDA device index
    int32_t multiple{0};                        // 2^levels; 0 = the sidecar's (PLAN.json, always read and checked)
    CropOptions crop{};
};

struct Profile
{
    int32_t minBatch{0}, maxBatch{0};
    int32_t minHeight{0}, maxHeight{0};
    int32_t minWidth{0}, maxWidth{0};
};

// One Engine is not thread-safe: give each thread its own (or serialize the calls). Every call runs on
// EngineOptions::device, whichever device the calling thread had current, and gives the thread its device back.
class Engine
{
public:
    explicit Engine(std::string const& planPath, EngineOptions const& options = EngineOptions{});
    ~Engine();
    Engine(Engine&&) noexcept;
    Engine& operator=(Engine&&) noexcept;
    Engine(Engine const&) = delete;
    Engine& operator=(Engine const&) = delete;

    // The contract on host NCHW float32 arrays: image (n,3,h,w) in [0,1], mask (n,1,h,w) 1 = hole ->
    // output (n,3,h,w). h, w: multiples of multiple() inside the profile; larger n is split into profile batches.
    void infer(float const* image, float const* mask, float* output, int32_t n, int32_t h, int32_t w);

    // uint8 engines: host NHWC uint8 arrays, image (n,h,w,3), mask (n,h,w,1) in the file's polarity (255 = hole
    // unless maskInverted()) -> output (n,h,w,3), the composite; any h, w inside the profile.
    void inferU8(uint8_t const* image, uint8_t const* mask, uint8_t* output, int32_t n, int32_t h, int32_t w);
    bool uint8Io() const noexcept;        // the engine takes uint8 photos (inferU8), not the float contract (infer)
    bool maskInverted() const noexcept;   // a uint8 engine's masks are 255 = keep

    // Image-level API: pads each image to the multiple (reflect), runs images of one padded size together,
    // crops back and composites (known pixels exact); large photos run in crops around their holes
    // (EngineOptions::crop, capped by the profile), so a photo larger than the profile is still served.
    std::vector<ImageU8> inpaint(std::vector<ImageU8> const& images, std::vector<MaskU8> const& masks);

    int32_t multiple() const noexcept;
    Profile profile() const noexcept;
    CUstream_st* stream() const noexcept;   // the CUDA stream every call runs on

private:
    struct Impl;
    std::unique_ptr<Impl> mImpl;
};

// Status-returning forms: no exception crosses them.
Status createEngine(
    std::string const& planPath, EngineOptions const& options, std::unique_ptr<Engine>& engine) noexcept;
Status inpaintNoThrow(Engine& engine, std::vector<ImageU8> const& images, std::vector<MaskU8> const& masks,
    std::vector<ImageU8>& results) noexcept;

// The bounds every size is checked against before anything is allocated (one place: imaging::checkSize).
namespace limits
{
// A profile's side and a multiple's largest value: madf.engines.build.MAX_SIDE (a test compares them).
constexpr int32_t kMaxSide = 16384;
// An image's pixels: twice PIL's decompression-bomb limit, the Python readers' bound (a test compares them).
constexpr int64_t kMaxPixels = 178956970;
// An image's side: PNG's own limit (2^31 - 1) is far past any photo; 65535 keeps width * 3 and padding in int32.
constexpr int32_t kMaxImageSide = 65535;
}   // namespace limits

// Image helpers behind Engine::inpaint (no TensorRT or GPU needed; tested on their own). Every size a caller gives is
// checked against its buffer and the limits above before anything is allocated: kINVALID_INPUT naming the problem.
namespace imaging
{
// `what` (e.g. "image a.png") is width x height, each side 1..kMaxImageSide and at most kMaxPixels pixels.
void checkSize(int64_t width, int64_t height, std::string const& what);
// A multiple (2^levels): a power of two from 1 to kMaxSide.
void checkMultiple(int64_t multiple, std::string const& what);
int32_t paddedSize(int32_t size, int32_t multiple);
void checkPair(ImageU8 const& image, MaskU8 const& mask);   // throws kINVALID_INPUT naming the problem
// Reflect-pad `count` images (all padding to one h x w) into contract arrays (resized to fit).
void toContract(ImageU8 const* images, MaskU8 const* masks, int32_t count, int32_t multiple, std::vector<float>& image,
    std::vector<float>& mask, int32_t& paddedHeight, int32_t& paddedWidth);
// Crop item `index` of a contract output back to the original size, round to 8 bits, keep known pixels exact.
ImageU8 fromContract(float const* output, int32_t index, int32_t paddedHeight, int32_t paddedWidth,
    ImageU8 const& original, MaskU8 const& mask);
// uint8 engines (madf-export --io uint8): `count` images of one size as the engine's NHWC inputs, the masks as 255 =
// hole (255 = keep when `invertedMask`, the file's --invert-mask); and item `index` of its output as the result.
void toUint8Batch(ImageU8 const* images, MaskU8 const* masks, int32_t count, bool invertedMask,
    std::vector<uint8_t>& image, std::vector<uint8_t>& mask);
ImageU8 fromUint8Batch(uint8_t const* output, int32_t index, ImageU8 const& original, MaskU8 const& mask);

// The crop strategy of madf/inpaint/strategy.py, box for box: every hole pixel in exactly one box, boxes disjoint, each
// rounded up to `multiple` and capped at `maxSide` unless one hole region is larger.
struct Box
{
    int32_t top{0}, left{0}, bottom{0}, right{0};   // bottom, right exclusive
};
// margin 0..kMaxSide, maxSide >= 1.
std::vector<Box> cropBoxes(MaskU8 const& mask, int32_t multiple, int32_t margin, int32_t maxSide);
// The box must lie inside the image (kINVALID_INPUT otherwise).
ImageU8 crop(ImageU8 const& image, Box const& box);
MaskU8 crop(MaskU8 const& mask, Box const& box);
// Write `filled` (the box's inpainted crop, box-sized) into `result` where `mask` (the whole image's) is a hole.
void pasteHoles(ImageU8& result, ImageU8 const& filled, MaskU8 const& mask, Box const& box);
}   // namespace imaging

// The sidecar contract (madf/engines/sidecar.py's, check for check and message for message): what a runtime checks
// before TensorRT sees a plan. No TensorRT or GPU needed; tests/fixtures/sidecars.json holds the cases both runtimes
// are run on. Every failure throws madf::Error with a one-line message naming the fix.
namespace sidecar
{
struct Sidecar
{
    int64_t bytes{0};
    std::string sha256;
    int32_t multiple{0};
    std::string backend, version;   // tensorrt.backend, tensorrt.version
    bool versionCompatible{false};
    bool pluginsCarried{false};   // version-compatible and a plugin library serialized into the plan
    std::string targetComputeCapability, targetGpu;   // empty when not recorded
    std::string io{"float"}, mask{"hole"}, lowering, precision;
};
// PLAN.json parsed with a JSON parser: valid JSON, no key given twice, format madf-engine/1, the required fields.
Sidecar read(std::string const& planPath);
Sidecar parse(std::string const& sidecarPath, std::string const& text);
// The plan's bytes: size, then SHA-256.
void checkPlan(std::string const& planPath, Sidecar const& sidecar, std::string const& plan);
// TensorRT version (major.minor.patch) unless the plan is version-compatible or `flavour` is lean / dispatch.
void checkVersion(
    std::string const& planPath, Sidecar const& sidecar, std::string const& version, std::string const& flavour);
// The compute capability ("9.0") the plan was built for against this GPU's.
void checkGpu(std::string const& planPath, Sidecar const& sidecar, std::string const& gpuName,
    std::string const& computeCapability);
}   // namespace sidecar

}   // namespace madf

#endif   // MADF_RUNTIME_H
