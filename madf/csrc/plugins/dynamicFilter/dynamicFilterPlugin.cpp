#include "dynamicFilterPlugin.h"

#include "../pluginLogging.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <utility>
#include <exception>
#include <string>

using namespace nvinfer1;

namespace madf
{
namespace
{

constexpr int32_t kNB_INPUTS = 4;   // features, mask_features, weight, bias
// Bumped whenever a tactic's kernel changes, so a timing cache made with other kernels is not trusted (it is part of
// getTimingCacheID).
constexpr int32_t kTACTIC_TABLE_VERSION = 2;
// The tactics offered to the builder (each timed per layer, so variants can only gain): SIMT, and for FP16 round 1,
// the cheaper stage and split-K in 2, 4 and 8. NHWC (kHWC8) features only the pipelined kernel reads.
constexpr madfTactic kFP16_TACTICS[] = {MADF_ALGO_SIMT, MADF_ALGO_TENSOR_CORE, MADF_ALGO_PIPELINED,
    MADF_TACTIC(MADF_ALGO_SPLIT_K, 2), MADF_TACTIC(MADF_ALGO_SPLIT_K, 4), MADF_TACTIC(MADF_ALGO_SPLIT_K, 8)};
constexpr madfTactic kHWC8_TACTICS[] = {MADF_ALGO_PIPELINED, MADF_TACTIC(MADF_ALGO_SPLIT_K, 2),
    MADF_TACTIC(MADF_ALGO_SPLIT_K, 4), MADF_TACTIC(MADF_ALGO_SPLIT_K, 8)};
constexpr madfTactic kFP32_TACTICS[] = {MADF_ALGO_SIMT};
// The split-K workspace TensorRT is asked for at most; a call whose splits need more runs with fewer.
constexpr size_t kMAX_WORKSPACE = size_t{16} << 20;
constexpr char const* kATTRIBUTES[] = {"kernel_size", "stride", "padding", "out_channels"};

int32_t* field(DynamicFilterParams& p, int32_t i)
{
    int32_t* slots[] = {&p.kernelSize, &p.stride, &p.padding, &p.outChannels};
    return slots[i];
}

// The ONNX parser hands integer attributes over as INT32 or INT64 depending on the TensorRT version. Returns nullptr
// when `value` was read, else what is wrong with the field.
char const* readInt(PluginField const& f, int32_t& value)
{
    if (f.data == nullptr || f.length != 1)
        return "must hold exactly one value";
    int64_t v = 0;
    switch (f.type)
    {
    case PluginFieldType::kINT32: v = *static_cast<int32_t const*>(f.data); break;
    case PluginFieldType::kINT64: v = *static_cast<int64_t const*>(f.data); break;
    case PluginFieldType::kINT16: v = *static_cast<int16_t const*>(f.data); break;
    case PluginFieldType::kINT8: v = *static_cast<int8_t const*>(f.data); break;
    default: return "must be an integer (INT32 or INT64)";
    }
    if (v < INT32_MIN || v > INT32_MAX)
        return "is out of the 32-bit range";
    value = static_cast<int32_t>(v);
    return nullptr;
}

// A string field (kCHAR), which need not be NUL-terminated.
std::string readString(PluginField const& f)
{
    if (f.type != PluginFieldType::kCHAR || f.data == nullptr || f.length < 0)
        return {};
    char const* c = static_cast<char const*>(f.data);
    return std::string(c, strnlen(c, static_cast<size_t>(f.length)));
}

// The ranks of the op's contract: features and mask_features (N, C, H, W), weight (D, Cm, 1, 1), bias (D).
bool hasContractRanks(
    PluginTensorDesc const& x, PluginTensorDesc const& m, PluginTensorDesc const& w, PluginTensorDesc const& b)
{
    return x.dims.nbDims == 4 && m.dims.nbDims == 4 && w.dims.nbDims == 4 && b.dims.nbDims == 1;
}

bool toDType(DataType t, madfDType& out)
{
    if (t == DataType::kFLOAT)
        out = MADF_FLOAT32;
    else if (t == DataType::kHALF)
        out = MADF_FLOAT16;
    else
        return false;
    return true;
}

}   // namespace

// ---- DynamicFilterPlugin ------------------------------------------------------------------------------------------

DynamicFilterPlugin::DynamicFilterPlugin(std::string name, DynamicFilterParams params)
    : mName(std::move(name))
    , mParams(params)
    , mTimingCacheId("k" + std::to_string(params.kernelSize) + "s" + std::to_string(params.stride) + "p"
          + std::to_string(params.padding) + "o" + std::to_string(params.outChannels) + "t"
          + std::to_string(kTACTIC_TABLE_VERSION))
{
}

// A clone is what a new execution context gets: the creation state, not the shape or device state of the original.
DynamicFilterPlugin::DynamicFilterPlugin(DynamicFilterPlugin const& other)
    : mName(other.mName)
    , mParams(other.mParams)
    , mTimingCacheId(other.mTimingCacheId)
    , mTactic(other.mTactic)
    , mConfiguredType(other.mConfiguredType)
    , mConfiguredFormat(other.mConfiguredFormat)
{
}

char const* DynamicFilterPlugin::getTimingCacheID() noexcept { return mTimingCacheId.c_str(); }

IPluginCapability* DynamicFilterPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

IPluginV3* DynamicFilterPlugin::clone() noexcept
{
    try
    {
        return new DynamicFilterPlugin(*this);
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    return nullptr;
}

char const* DynamicFilterPlugin::getPluginName() const noexcept { return kDYNAMIC_FILTER_NAME; }
char const* DynamicFilterPlugin::getPluginVersion() const noexcept { return kDYNAMIC_FILTER_VERSION; }
char const* DynamicFilterPlugin::getPluginNamespace() const noexcept { return kDYNAMIC_FILTER_NAMESPACE; }
int32_t DynamicFilterPlugin::getNbOutputs() const noexcept { return 1; }

int32_t DynamicFilterPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (nbOutputs != 1 || nbInputs != kNB_INPUTS)
        return -1;
    outputTypes[0] = inputTypes[0];
    return 0;
}

int32_t DynamicFilterPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t,
    DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept
{
    if (nbInputs != kNB_INPUTS || nbOutputs != 1 || inputs[0].nbDims != 4 || inputs[1].nbDims != 4)
    {
        logError("MADFDynamicFilter: expects 4 inputs, features and mask_features 4-D (N, C, H, W)");
        return -1;
    }
    // (N, Cout, Ho, Wo): the output grid is the mask features' grid (checked against the features in enqueue)
    outputs[0].nbDims = 4;
    outputs[0].d[0] = inputs[0].d[0];
    outputs[0].d[1] = exprBuilder.constant(mParams.outChannels);
    outputs[0].d[2] = inputs[1].d[2];
    outputs[0].d[3] = inputs[1].d[3];
    return 0;
}

bool DynamicFilterPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (nbInputs != kNB_INPUTS || nbOutputs != 1 || pos < 0 || pos >= nbInputs + nbOutputs)
        return false;
    PluginTensorDesc const& desc = inOut[pos].desc;
    bool const floating = desc.type == DataType::kFLOAT || desc.type == DataType::kHALF;
    if (!floating || desc.type != inOut[0].desc.type)
        return false;
    // features may also be kHWC8 (NHWC) in FP16 when the pipelined kernel can read it: whole 32-channel blocks,
    // the official mask channels and whole 16-channel output tiles
    if (pos == 0 && desc.format == TensorFormat::kHWC8)
        return desc.type == DataType::kHALF && desc.dims.nbDims == 4 && desc.dims.d[1] > 0 && desc.dims.d[1] % 32 == 0
            && mParams.outChannels % 16 == 0 && (nbInputs < 2 || inOut[1].desc.dims.d[1] == 16);
    return desc.format == TensorFormat::kLINEAR;
}

int32_t DynamicFilterPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const*, int32_t nbOutputs) noexcept
{
    if (nbInputs != kNB_INPUTS || nbOutputs != 1 || !hasContractRanks(in[0].desc, in[1].desc, in[2].desc, in[3].desc))
    {
        logError("MADFDynamicFilter: expects features and mask_features 4-D, weight (D, Cm, 1, 1), bias (D)");
        return -1;
    }
    // Channel counts are static in every madf export: check the kernel generator matches the attributes now,
    // so a bad graph fails at build time rather than producing garbage.
    int64_t const cin = in[0].desc.dims.d[1], cm = in[1].desc.dims.d[1];
    int64_t const genOut = in[2].desc.dims.d[0], genIn = in[2].desc.dims.d[1];
    int64_t const k = mParams.kernelSize;
    if (cin > 0 && genOut > 0 && genOut != cin * k * k * mParams.outChannels)
    {
        logError("MADFDynamicFilter: weight rows != Cin * kernel_size^2 * out_channels; was the graph edited?");
        return -1;
    }
    if (cm > 0 && genIn > 0 && genIn != cm)
    {
        logError("MADFDynamicFilter: weight columns != mask_features channels");
        return -1;
    }
    mConfiguredType = in[0].desc.type;
    mConfiguredFormat = in[0].desc.format;
    return 0;
}

// Split-K's FP32 partial outputs at the largest shape of the profile, capped (the launch uses fewer splits when the
// cap is below what its splits need): zero for FP32, which only SIMT runs.
size_t DynamicFilterPlugin::getWorkspaceSize(
    DynamicPluginTensorDesc const* inputs, int32_t nbInputs, DynamicPluginTensorDesc const*, int32_t) const noexcept
{
    if (nbInputs != kNB_INPUTS || inputs[0].desc.type != DataType::kHALF || inputs[0].max.nbDims != 4
        || inputs[1].max.nbDims != 4)
        return 0;
    madfDynamicFilterShape s{};
    s.batch = static_cast<int32_t>(inputs[0].max.d[0]);
    s.inChannels = static_cast<int32_t>(inputs[0].max.d[1]);
    s.height = static_cast<int32_t>(inputs[0].max.d[2]);
    s.width = static_cast<int32_t>(inputs[0].max.d[3]);
    s.maskChannels = static_cast<int32_t>(inputs[1].max.d[1]);
    s.outChannels = mParams.outChannels;
    s.kernelSize = mParams.kernelSize;
    s.stride = mParams.stride;
    s.padding = mParams.padding;
    s.featuresLayout = inputs[0].desc.format == TensorFormat::kHWC8 ? MADF_LAYOUT_NHWC : MADF_LAYOUT_NCHW;
    madfDeviceFacts facts{};
    if (madfDynamicFilterQueryDevice(&facts) != cudaSuccess)
        return 0;
    size_t const need =
        madfDynamicFilterWorkspaceSize(&s, MADF_FLOAT16, MADF_TACTIC(MADF_ALGO_SPLIT_K, MADF_MAX_SPLITS), &facts);
    return need < kMAX_WORKSPACE ? need : kMAX_WORKSPACE;
}

// The tactics for the format combination of the last configurePlugin (TensorRT times each); no allocation, so the
// noexcept callers cannot throw.
std::pair<madfTactic const*, int32_t> DynamicFilterPlugin::tactics() const
{
    if (mConfiguredType != DataType::kHALF)
        return {kFP32_TACTICS, static_cast<int32_t>(std::size(kFP32_TACTICS))};
    if (mConfiguredFormat == TensorFormat::kHWC8)
        return {kHWC8_TACTICS, static_cast<int32_t>(std::size(kHWC8_TACTICS))};
    return {kFP16_TACTICS, static_cast<int32_t>(std::size(kFP16_TACTICS))};
}

int32_t DynamicFilterPlugin::getNbTactics() noexcept { return tactics().second; }

int32_t DynamicFilterPlugin::getValidTactics(int32_t* tactics, int32_t nbTactics) noexcept
{
    auto const [offered, count] = this->tactics();
    if (tactics == nullptr || nbTactics < count)
        return -1;
    std::copy(offered, offered + count, tactics);
    return 0;
}

int32_t DynamicFilterPlugin::setTactic(int32_t tactic) noexcept
{
    if (tactic != MADF_ALGO_AUTO
        && std::find(std::begin(kFP16_TACTICS), std::end(kFP16_TACTICS), tactic) == std::end(kFP16_TACTICS))
    {
        logError(("MADFDynamicFilter: unknown tactic " + std::to_string(tactic)
            + " (0 auto, 1 SIMT, 2 tensor cores, 3 pipelined, 4 | S << 8 split-K in S = 2, 4, 8)")
                     .c_str());
        return -1;
    }
    mTactic = tactic;
    return 0;
}

// TensorRT calls this whenever the input shapes change (and before the first enqueue), as ROIAlignV3 does: every
// check of the op's contract runs here once per shape, the launch shape is cached, and the device is asked once.
int32_t DynamicFilterPlugin::onShapeChange(
    PluginTensorDesc const* inputDesc, int32_t nbInputs, PluginTensorDesc const* outputDesc, int32_t nbOutputs) noexcept
{
    mShapeValid = false;
    if (nbInputs != kNB_INPUTS || nbOutputs != 1)
    {
        logError("MADFDynamicFilter: expects 4 inputs and 1 output");
        return -1;
    }
    madfDType dtype;
    if (!toDType(inputDesc[0].type, dtype) || inputDesc[1].type != inputDesc[0].type
        || inputDesc[2].type != inputDesc[0].type || inputDesc[3].type != inputDesc[0].type
        || outputDesc[0].type != inputDesc[0].type)
    {
        logError("MADFDynamicFilter: all tensors must be FP32, or all FP16");
        return -1;
    }
    if (!hasContractRanks(inputDesc[0], inputDesc[1], inputDesc[2], inputDesc[3]) || outputDesc[0].dims.nbDims != 4)
    {
        logError("MADFDynamicFilter: expects features and mask_features 4-D, weight (D, Cm, 1, 1), bias (D)");
        return -1;
    }
    Dims const& x = inputDesc[0].dims;
    Dims const& m = inputDesc[1].dims;
    madfDynamicFilterShape shape{};
    shape.batch = static_cast<int32_t>(x.d[0]);
    shape.inChannels = static_cast<int32_t>(x.d[1]);
    shape.height = static_cast<int32_t>(x.d[2]);
    shape.width = static_cast<int32_t>(x.d[3]);
    shape.maskChannels = static_cast<int32_t>(m.d[1]);
    shape.outChannels = mParams.outChannels;
    shape.kernelSize = mParams.kernelSize;
    shape.stride = mParams.stride;
    shape.padding = mParams.padding;
    shape.featuresLayout = inputDesc[0].format == TensorFormat::kHWC8 ? MADF_LAYOUT_NHWC : MADF_LAYOUT_NCHW;
    if (inputDesc[0].format != TensorFormat::kLINEAR && shape.featuresLayout != MADF_LAYOUT_NHWC)
    {
        logError("MADFDynamicFilter: features must be kLINEAR or kHWC8");
        return -1;
    }
    if (char const* problem = madfDynamicFilterCheck(&shape))
    {
        logError(problem);
        return -1;
    }
    if (shape.featuresLayout == MADF_LAYOUT_NHWC
        && MADF_TACTIC_ALGO(madfDynamicFilterSelect(&shape, dtype, MADF_ALGO_PIPELINED)) == MADF_ALGO_AUTO)
    {
        logError(
            "MADFDynamicFilter: no kernel reads these kHWC8 features (FP16, Cin % 32 == 0, Cm 16, Cout % 16 == 0)");
        return -1;
    }
    int64_t const ho = madfDynamicFilterOutputSize(shape.height, shape.kernelSize, shape.stride, shape.padding);
    int64_t const wo = madfDynamicFilterOutputSize(shape.width, shape.kernelSize, shape.stride, shape.padding);
    Dims const& y = outputDesc[0].dims;
    if (m.d[0] != x.d[0] || m.d[2] != ho || m.d[3] != wo || y.d[0] != x.d[0] || y.d[1] != shape.outChannels
        || y.d[2] != ho || y.d[3] != wo)
    {
        logError("MADFDynamicFilter: mask_features or the output do not match the output grid of the features");
        return -1;
    }
    // the kernel reads weight and bias in place: their extents must be exactly what the attributes say
    Dims const& w = inputDesc[2].dims;
    int64_t const rows =
        static_cast<int64_t>(shape.inChannels) * shape.kernelSize * shape.kernelSize * shape.outChannels;
    if (w.d[0] != rows || w.d[1] != shape.maskChannels || w.d[2] != 1 || w.d[3] != 1 || inputDesc[3].dims.d[0] != rows)
    {
        logError("MADFDynamicFilter: weight must be (Cin * kernel_size^2 * out_channels, Cm, 1, 1) and bias its rows");
        return -1;
    }
    if (!mHaveFacts)
    {
        cudaError_t const status = madfDynamicFilterQueryDevice(&mFacts);
        if (status != cudaSuccess)
        {
            logError(
                (std::string("MADFDynamicFilter: cannot query the device: ") + cudaGetErrorString(status)).c_str());
            return -1;
        }
        mHaveFacts = true;
    }
    mShape = shape;
    mType = inputDesc[0].type;
    mShapeValid = true;
    return 0;
}

int32_t DynamicFilterPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const*,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    if (!mShapeValid || inputDesc[0].type != mType)
    {
        logError("MADFDynamicFilter: enqueue without a valid onShapeChange for these tensors");
        return -1;
    }
    madfDType const dtype = mType == DataType::kHALF ? MADF_FLOAT16 : MADF_FLOAT32;
    // What this shape's splits need, capped as getWorkspaceSize capped it: never more than TensorRT allocated (a
    // tactic splits a smaller shape of the profile no more than its largest, over fewer pixels).
    size_t const need = madfDynamicFilterWorkspaceSize(&mShape, dtype, mTactic, &mFacts);
    cudaError_t const status = madfDynamicFilterForwardOn(&mShape, dtype, mTactic, &mFacts, inputs[0], inputs[1],
        inputs[2], inputs[3], outputs[0], workspace, workspace != nullptr ? std::min(need, kMAX_WORKSPACE) : 0, stream);
    if (status != cudaSuccess)
    {
        logError((std::string("MADFDynamicFilter: kernel launch failed: ") + cudaGetErrorString(status)).c_str());
        return -1;
    }
    return 0;
}

IPluginV3* DynamicFilterPlugin::attachToContext(IPluginResourceContext*) noexcept
{
    return clone();   // no per-context resources: no cuBLAS/cuDNN handles (split-K uses TensorRT's workspace)
}

PluginFieldCollection const* DynamicFilterPlugin::getFieldsToSerialize() noexcept
{
    mFields.clear();
    for (int32_t i = 0; i < 4; ++i)
        mFields.emplace_back(kATTRIBUTES[i], field(mParams, i), PluginFieldType::kINT32, 1);
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
    return &mFieldCollection;
}

// ---- DynamicFilterPluginCreator -----------------------------------------------------------------------------------

DynamicFilterPluginCreator::DynamicFilterPluginCreator()
{
    for (char const* name : kATTRIBUTES)
        mFields.emplace_back(name, nullptr, PluginFieldType::kINT32, 1);
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
}

char const* DynamicFilterPluginCreator::getPluginName() const noexcept { return kDYNAMIC_FILTER_NAME; }
char const* DynamicFilterPluginCreator::getPluginVersion() const noexcept { return kDYNAMIC_FILTER_VERSION; }
char const* DynamicFilterPluginCreator::getPluginNamespace() const noexcept { return kDYNAMIC_FILTER_NAMESPACE; }
PluginFieldCollection const* DynamicFilterPluginCreator::getFieldNames() noexcept { return &mFieldCollection; }

IPluginV3* DynamicFilterPluginCreator::createPlugin(
    char const* name, PluginFieldCollection const* fc, TensorRTPhase) noexcept
{
    try
    {
        auto refuse = [](std::string const& why) -> IPluginV3* {
            logError(("MADFDynamicFilter: " + why + "; export the ONNX with madf-export --dynconv plugin").c_str());
            return nullptr;
        };
        if (fc == nullptr || fc->nbFields < 0 || (fc->nbFields > 0 && fc->fields == nullptr))
            return refuse("no plugin fields given");
        DynamicFilterParams params;
        bool seen[4] = {false, false, false, false};
        for (int32_t f = 0; f < fc->nbFields; ++f)
        {
            PluginField const& pf = fc->fields[f];
            std::string const fieldName = pf.name != nullptr ? pf.name : "";
            // Parsers that pass the ONNX node's plugin_version / plugin_namespace along must name this plugin.
            if (fieldName == "plugin_version" && readString(pf) != kDYNAMIC_FILTER_VERSION)
                return refuse("plugin_version '" + readString(pf) + "' is not " + kDYNAMIC_FILTER_VERSION
                    + " (the version this library implements)");
            if (fieldName == "plugin_namespace" && readString(pf) != kDYNAMIC_FILTER_NAMESPACE)
                return refuse("plugin_namespace '" + readString(pf) + "' is not " + kDYNAMIC_FILTER_NAMESPACE);
            for (int32_t i = 0; i < 4; ++i)
            {
                if (fieldName != kATTRIBUTES[i])
                    continue;
                if (char const* problem = readInt(pf, *field(params, i)))
                    return refuse(std::string("attribute ") + kATTRIBUTES[i] + " " + problem);
                seen[i] = true;
            }
        }
        for (int32_t i = 0; i < 4; ++i)
        {
            if (!seen[i])
                return refuse(std::string("missing integer attribute ") + kATTRIBUTES[i]);
        }
        if (params.kernelSize <= 0 || params.stride <= 0 || params.padding < 0 || params.outChannels <= 0)
            return refuse("kernel_size, stride, out_channels must be positive and padding >= 0; got "
                + std::to_string(params.kernelSize) + ", " + std::to_string(params.stride) + ", "
                + std::to_string(params.outChannels) + ", " + std::to_string(params.padding));
        return new DynamicFilterPlugin(name != nullptr ? name : "", params);
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    return nullptr;
}

}   // namespace madf
