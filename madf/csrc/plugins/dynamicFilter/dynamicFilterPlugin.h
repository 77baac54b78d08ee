/*
 * MADFDynamicFilter: the madf::MADFDynamicFilter ONNX op (docs/ops/MADFDynamicFilter.md) as a TensorRT IPluginV3.
 * Inputs: features (N,Cin,H,W), mask_features (N,Cm,Ho,Wo), weight (Cin*k*k*Cout,Cm,1,1), bias (Cin*k*k*Cout);
 * output (N,Cout,Ho,Wo); one type for all (FP32 or FP16), linear NCHW (features also kHWC8 in FP16 when Cin % 32
 * == 0), dynamic N/H/W. Tactics: SIMT, and for FP16 the round-1 tensor-core kernel, the pipelined one and split-K in
 * 2, 4 and 8 (dynamicFilterKernel.cuh), each timed by the builder. The attributes (kernel_size,
 * stride, padding, out_channels) are the only state, serialized with the engine through getFieldsToSerialize.
 */
#ifndef MADF_DYNAMIC_FILTER_PLUGIN_H
#define MADF_DYNAMIC_FILTER_PLUGIN_H

#include <NvInferRuntime.h>

#include "dynamicFilterKernel.cuh"

#include <string>
#include <utility>
#include <vector>

namespace madf
{

constexpr char const* kDYNAMIC_FILTER_NAME{"MADFDynamicFilter"};
constexpr char const* kDYNAMIC_FILTER_VERSION{"1"};
constexpr char const* kDYNAMIC_FILTER_NAMESPACE{"madf"};   // the ONNX node's domain and plugin_namespace

struct DynamicFilterParams
{
    int32_t kernelSize{0};
    int32_t stride{0};
    int32_t padding{0};
    int32_t outChannels{0};
};

class DynamicFilterPlugin final : public nvinfer1::IPluginV3,
                                  public nvinfer1::IPluginV3OneCore,
                                  public nvinfer1::IPluginV3OneBuild,
                                  public nvinfer1::IPluginV3OneRuntime
{
public:
    DynamicFilterPlugin(std::string name, DynamicFilterParams params);
    DynamicFilterPlugin(DynamicFilterPlugin const& other);
    DynamicFilterPlugin& operator=(DynamicFilterPlugin const&) = delete;
    ~DynamicFilterPlugin() override = default;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs, nvinfer1::DataType const* inputTypes,
        int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;
    int32_t getNbTactics() noexcept override;
    int32_t getValidTactics(int32_t* tactics, int32_t nbTactics) noexcept override;
    char const* getTimingCacheID() noexcept override;

    // IPluginV3OneRuntime
    int32_t setTactic(int32_t tactic) noexcept override;
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    std::string mName;
    DynamicFilterParams mParams;
    std::pair<madfTactic const*, int32_t> tactics() const;

    std::string mTimingCacheId;   // the attributes and the tactic table's version: TensorRT adds shapes and formats
    madfTactic mTactic{0};        // 0 = auto until TensorRT picks a timed tactic
    // the format combination of the last configurePlugin: what getValidTactics offers
    nvinfer1::DataType mConfiguredType{nvinfer1::DataType::kFLOAT};
    nvinfer1::TensorFormat mConfiguredFormat{nvinfer1::TensorFormat::kLINEAR};
    // Set by onShapeChange, which validates each new shape once; enqueue only checks the type and launches.
    madfDynamicFilterShape mShape{};
    nvinfer1::DataType mType{nvinfer1::DataType::kFLOAT};
    bool mShapeValid{false};
    // The device's facts, asked once per plugin instance (one per execution context: attachToContext clones).
    madfDeviceFacts mFacts{};
    bool mHaveFacts{false};
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

class DynamicFilterPluginCreator final : public nvinfer1::IPluginCreatorV3One
{
public:
    DynamicFilterPluginCreator();
    ~DynamicFilterPluginCreator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

}   // namespace madf

#endif   // MADF_DYNAMIC_FILTER_PLUGIN_H
