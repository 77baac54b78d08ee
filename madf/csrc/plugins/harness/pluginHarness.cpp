// madf_plugin_harness: loads a madf plugin library the way TensorRT's loader does (dlopen, setLoggerFinder with a
// logger of its own, getCreators) and walks a MADFDynamicFilter plugin through the life TensorRT's builder and
// runtime give it, through the IPluginV3 interfaces only; no TensorRT library is needed.
//
//   madf_plugin_harness LIBRARY life int32|int64 k=7 s=2 p=3 cout=16
//                       [enqueue DIR fp32|fp16 N,CIN,H,W,CM host|cuda [hwc8]]
//   madf_plugin_harness LIBRARY refuse
//
// `life`: creator identity and fields, createPlugin (BUILD phase) from the given attributes as INT32 or INT64
// fields, the CORE/BUILD/RUNTIME capabilities, output types and shapes (constant and symbolic dimensions through an
// IExprBuilder implemented here), every format/type combination, configurePlugin, tactics, workspace, clone, the
// serialization round trip (RUNTIME phase), onShapeChange, attachToContext, and with `enqueue` a launch per tactic on
// DIR/{x,m,weight,bias}.bin (float32, NCHW), with the workspace getWorkspaceSize asks for that shape, writing
// DIR/out_TACTIC.bin (float32) for the caller to check against its reference; `hwc8` hands the features over as
// kHWC8 (NHWC), which the pipelined tactics read. `host` memory is for the emulated library (kernels on the CPU), `cuda` for the real one.
// `refuse`: bad fields and bad calls must be refused with a logged error, never a crash.
// Prints "ok ..." / "FAIL ..." per check, "field NAME TYPE LENGTH" per declared field, "log SEVERITY MESSAGE" per
// logged message, and "N failure(s)" last; exits 1 on any failure.
#include <NvInferRuntime.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <dlfcn.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace
{

int gFailures = 0;

void check(bool ok, std::string const& what)
{
    std::printf("%s %s\n", ok ? "ok" : "FAIL", what.c_str());
    gFailures += ok ? 0 : 1;
}

// ---- the logger TensorRT would hand the library -------------------------------------------------------------------
class RecordingLogger final : public ILogger
{
public:
    void log(Severity severity, AsciiChar const* message) noexcept override
    {
        static char const* const names[] = {"INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"};
        std::printf("log %s %s\n", names[static_cast<int>(severity)], message);
        if (severity <= Severity::kERROR)
            ++errors;
    }
    int errors{0};
};

class LoggerFinder final : public ILoggerFinder
{
public:
    explicit LoggerFinder(ILogger* logger)
        : mLogger(logger)
    {
    }
    ILogger* findLogger() override { return mLogger; }

private:
    ILogger* mLogger;
};

// ---- dimension expressions, as the builder hands them to getOutputShapes ------------------------------------------
// A constant, or a symbol (a dynamic N/H/W) with the text of how it was made; operations on constants fold.
class ExprValue final : public apiv::VDimensionExpr
{
public:
    ExprValue(bool constant, int64_t value, std::string text)
        : mConstant(constant)
        , mValue(value)
        , mText(std::move(text))
    {
    }
    bool isConstant() const override { return mConstant; }
    int64_t getConstantValue() const override { return mConstant ? mValue : std::numeric_limits<int64_t>::min(); }
    bool isSizeTensor() const override { return false; }
    std::string const& text() const { return mText; }

private:
    bool mConstant;
    int64_t mValue;
    std::string mText;
};

class Expr final : public IDimensionExpr
{
public:
    explicit Expr(std::unique_ptr<ExprValue> value)
        : mValue(std::move(value))
    {
        mImpl = mValue.get();
    }
    ~Expr() noexcept override = default;
    std::string const& text() const { return mValue->text(); }

private:
    std::unique_ptr<ExprValue> mValue;
};

std::string textOf(IDimensionExpr const* e)
{
    if (e == nullptr)
        return "<null>";
    return static_cast<Expr const*>(e)->text();
}

class ExprBuilderImpl final : public apiv::VExprBuilder
{
public:
    IDimensionExpr const* constant(int64_t value) override { return make(true, value, std::to_string(value)); }
    IDimensionExpr const* symbol(std::string const& name) { return make(false, 0, name); }
    IDimensionExpr const* operation(DimensionOperation op, IDimensionExpr const& a, IDimensionExpr const& b) override
    {
        static char const* const names[] = {"+", "*", "max", "min", "-", "==", "<", "//", "ceil/"};
        int const i = static_cast<int>(op);
        if (i < 0 || i >= EnumMax<DimensionOperation>())
            return nullptr;
        std::string const text = "(" + textOf(&a) + " " + names[i] + " " + textOf(&b) + ")";
        if (!a.isConstant() || !b.isConstant())
            return make(false, 0, text);
        int64_t const x = a.getConstantValue(), y = b.getConstantValue();
        int64_t v = 0;
        switch (op)
        {
        case DimensionOperation::kSUM: v = x + y; break;
        case DimensionOperation::kPROD: v = x * y; break;
        case DimensionOperation::kMAX: v = x > y ? x : y; break;
        case DimensionOperation::kMIN: v = x < y ? x : y; break;
        case DimensionOperation::kSUB: v = x - y; break;
        case DimensionOperation::kEQUAL: v = x == y; break;
        case DimensionOperation::kLESS: v = x < y; break;
        case DimensionOperation::kFLOOR_DIV: v = y == 0 ? 0 : (x / y - ((x % y != 0) && ((x < 0) != (y < 0)))); break;
        case DimensionOperation::kCEIL_DIV:
            v = y == 0 ? 0 : -((-x) / y - (((-x) % y != 0) && ((-x < 0) != (y < 0))));
            break;
        }
        return make(true, v, text);
    }
    IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override
    {
        return nullptr;   // MADFDynamicFilter has no data-dependent shapes
    }

private:
    IDimensionExpr const* make(bool constant, int64_t value, std::string text)
    {
        mExprs.push_back(std::make_unique<Expr>(std::make_unique<ExprValue>(constant, value, std::move(text))));
        return mExprs.back().get();
    }
    std::deque<std::unique_ptr<Expr>> mExprs;
};

class ExprBuilder final : public IExprBuilder
{
public:
    ExprBuilder() { mImpl = &impl; }
    ~ExprBuilder() noexcept override = default;
    ExprBuilderImpl impl;
};

class ResourceContext final : public IPluginResourceContext
{
public:
    IGpuAllocator* getGpuAllocator() const noexcept override { return nullptr; }
    IErrorRecorder* getErrorRecorder() const noexcept override { return nullptr; }
};

// ---- the library, loaded as TensorRT loads it ---------------------------------------------------------------------
struct Library
{
    void* handle{nullptr};
    IPluginCreatorInterface* const* creators{nullptr};
    int32_t nbCreators{0};
};

Library load(char const* path, ILoggerFinder* finder)
{
    Library lib;
    lib.handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    check(lib.handle != nullptr, std::string("dlopen ") + path + (lib.handle ? "" : std::string(": ") + dlerror()));
    if (lib.handle == nullptr)
        return lib;
    using GetCreators = IPluginCreatorInterface* const* (*)(int32_t&);
    using SetLoggerFinder = void (*)(ILoggerFinder*);
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(lib.handle, "getCreators"));
    auto setLoggerFinder = reinterpret_cast<SetLoggerFinder>(dlsym(lib.handle, "setLoggerFinder"));
    check(getCreators != nullptr && setLoggerFinder != nullptr, "the library exports getCreators and setLoggerFinder");
    if (getCreators == nullptr || setLoggerFinder == nullptr)
        return lib;
    setLoggerFinder(finder);   // TensorRT does this before asking for creators
    lib.creators = getCreators(lib.nbCreators);
    return lib;
}

// What IPluginRegistry::getCreator does: match name, version and namespace among V3 creators.
IPluginCreatorV3One* findCreator(Library const& lib, char const* name, char const* version, char const* ns)
{
    for (int32_t i = 0; lib.creators != nullptr && i < lib.nbCreators; ++i)
    {
        IPluginCreatorInterface* c = lib.creators[i];
        if (c == nullptr || std::strcmp(c->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") != 0)
            continue;
        auto* v3 = static_cast<IPluginCreatorV3One*>(c);
        if (std::strcmp(v3->getPluginName(), name) == 0 && std::strcmp(v3->getPluginVersion(), version) == 0
            && std::strcmp(v3->getPluginNamespace(), ns) == 0)
            return v3;
    }
    return nullptr;
}

char const* fieldTypeName(PluginFieldType t)
{
    switch (t)
    {
    case PluginFieldType::kINT32: return "INT32";
    case PluginFieldType::kINT64: return "INT64";
    case PluginFieldType::kINT16: return "INT16";
    case PluginFieldType::kINT8: return "INT8";
    case PluginFieldType::kFLOAT32: return "FLOAT32";
    case PluginFieldType::kCHAR: return "CHAR";
    default: return "OTHER";
    }
}

// Integer fields of either width, as the ONNX parser might pass them.
struct Fields
{
    std::vector<std::string> names;
    std::vector<int32_t> i32;
    std::vector<int64_t> i64;
    std::vector<PluginField> fields;
    PluginFieldCollection fc{};

    Fields(std::vector<std::pair<std::string, int64_t>> const& values, bool wide)
    {
        for (auto const& v : values)
        {
            names.push_back(v.first);
            i32.push_back(static_cast<int32_t>(v.second));
            i64.push_back(v.second);
        }
        for (size_t i = 0; i < values.size(); ++i)
            fields.emplace_back(names[i].c_str(), wide ? static_cast<void const*>(&i64[i]) : &i32[i],
                wide ? PluginFieldType::kINT64 : PluginFieldType::kINT32, 1);
        fc.nbFields = static_cast<int32_t>(fields.size());
        fc.fields = fields.data();
    }
};

struct Params
{
    int64_t k{0}, s{0}, p{0}, cout{0};
};

std::string serialized(IPluginV3OneRuntime* runtime)
{
    PluginFieldCollection const* fc = runtime->getFieldsToSerialize();
    std::ostringstream out;
    for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        out << f.name << ":" << fieldTypeName(f.type) << ":";
        if (f.type == PluginFieldType::kINT32 && f.data != nullptr)
            out << *static_cast<int32_t const*>(f.data);
        out << ";";
    }
    return out.str();
}

template <typename T>
T* capability(IPluginV3* plugin, PluginCapabilityType type)
{
    return plugin == nullptr ? nullptr : static_cast<T*>(plugin->getCapabilityInterface(type));
}

Dims dims(std::vector<int64_t> const& d)
{
    Dims out{};
    out.nbDims = static_cast<int32_t>(d.size());
    for (size_t i = 0; i < d.size(); ++i)
        out.d[i] = d[i];
    return out;
}

PluginTensorDesc desc(std::vector<int64_t> const& d, DataType type)
{
    PluginTensorDesc t{};
    t.dims = dims(d);
    t.type = type;
    t.format = TensorFormat::kLINEAR;
    t.scale = 1.0F;
    return t;
}

struct Problem
{
    int64_t n, cin, h, w, cm;
};

int64_t outSize(int64_t in, Params const& p) { return (in + 2 * p.p - p.k) / p.s + 1; }

// The four inputs and the output of a call, as TensorRT describes them at run time.
std::vector<PluginTensorDesc> runtimeDescs(Problem const& q, Params const& p, DataType type)
{
    int64_t const d = q.cin * p.k * p.k * p.cout, ho = outSize(q.h, p), wo = outSize(q.w, p);
    return {desc({q.n, q.cin, q.h, q.w}, type), desc({q.n, q.cm, ho, wo}, type), desc({d, q.cm, 1, 1}, type),
        desc({d}, type), desc({q.n, p.cout, ho, wo}, type)};
}

std::vector<float> readFloats(std::string const& path, size_t count)
{
    std::vector<float> v(count);
    std::ifstream in(path, std::ios::binary);
    in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(count * sizeof(float)));
    check(static_cast<bool>(in), "read " + std::to_string(count) + " floats from " + path);
    return v;
}

// Device (or, for the emulated library, host) buffers holding float32 or float16 data.
class Buffers
{
public:
    Buffers(bool device, bool half)
        : mDevice(device)
        , mHalf(half)
    {
    }
    ~Buffers()
    {
        for (void* p : mOwned)
            mDevice ? static_cast<void>(cudaFree(p)) : std::free(p);
    }
    void* upload(std::vector<float> const& v)
    {
        std::vector<unsigned char> bytes(v.size() * elementSize());
        for (size_t i = 0; i < v.size(); ++i)
        {
            if (mHalf)
                reinterpret_cast<__half*>(bytes.data())[i] = __float2half_rn(v[i]);
            else
                reinterpret_cast<float*>(bytes.data())[i] = v[i];
        }
        void* p = allocate(bytes.size());
        if (mDevice)
            check(cudaMemcpy(p, bytes.data(), bytes.size(), cudaMemcpyHostToDevice) == cudaSuccess, "upload");
        else
            std::memcpy(p, bytes.data(), bytes.size());
        return p;
    }
    void* poisoned(size_t count)   // every output element must be written
    {
        return upload(std::vector<float>(count, -7.0F));
    }
    std::vector<float> download(void const* p, size_t count)
    {
        std::vector<unsigned char> bytes(count * elementSize());
        if (mDevice)
            check(cudaMemcpy(bytes.data(), p, bytes.size(), cudaMemcpyDeviceToHost) == cudaSuccess, "download");
        else
            std::memcpy(bytes.data(), p, bytes.size());
        std::vector<float> v(count);
        for (size_t i = 0; i < count; ++i)
            v[i] = mHalf ? __half2float(reinterpret_cast<__half const*>(bytes.data())[i])
                         : reinterpret_cast<float const*>(bytes.data())[i];
        return v;
    }

    void* allocate(size_t bytes)
    {
        void* p = nullptr;
        if (mDevice)
            check(cudaMalloc(&p, bytes > 0 ? bytes : 1) == cudaSuccess, "cudaMalloc");
        else
            p = std::malloc(bytes > 0 ? bytes : 1);
        mOwned.push_back(p);
        return p;
    }

private:
    size_t elementSize() const { return mHalf ? sizeof(__half) : sizeof(float); }
    bool mDevice, mHalf;
    std::vector<void*> mOwned;
};

// ---- life ---------------------------------------------------------------------------------------------------------
void checkIdentity(IPluginCreatorV3One* creator)
{
    check(std::strcmp(creator->getPluginName(), "MADFDynamicFilter") == 0, "creator name MADFDynamicFilter");
    check(std::strcmp(creator->getPluginVersion(), "1") == 0, "creator version 1");
    check(std::strcmp(creator->getPluginNamespace(), "madf") == 0, "creator namespace madf");
    InterfaceInfo const info = creator->getInterfaceInfo();
    check(std::strcmp(info.kind, "PLUGIN CREATOR_V3ONE") == 0 && info.major == 1, "creator is IPluginCreatorV3One");
    PluginFieldCollection const* names = creator->getFieldNames();
    check(names != nullptr && names->nbFields > 0, "getFieldNames");
    for (int32_t i = 0; names != nullptr && i < names->nbFields; ++i)
        std::printf(
            "field %s %s %d\n", names->fields[i].name, fieldTypeName(names->fields[i].type), names->fields[i].length);
}

void checkCapabilities(IPluginV3* plugin)
{
    struct Expected
    {
        PluginCapabilityType type;
        char const* kind;
    };
    for (Expected const& e : {Expected{PluginCapabilityType::kCORE, "PLUGIN_V3ONE_CORE"},
             Expected{PluginCapabilityType::kBUILD, "PLUGIN_V3ONE_BUILD"},
             Expected{PluginCapabilityType::kRUNTIME, "PLUGIN_V3ONE_RUNTIME"}})
    {
        IPluginCapability* c = plugin->getCapabilityInterface(e.type);
        check(
            c != nullptr && std::strcmp(c->getInterfaceInfo().kind, e.kind) == 0, std::string("capability ") + e.kind);
    }
    auto* core = capability<IPluginV3OneCore>(plugin, PluginCapabilityType::kCORE);
    check(core != nullptr && std::strcmp(core->getPluginName(), "MADFDynamicFilter") == 0
            && std::strcmp(core->getPluginVersion(), "1") == 0 && std::strcmp(core->getPluginNamespace(), "madf") == 0,
        "core name, version, namespace");
}

void checkShapes(IPluginV3OneBuild* build, Params const& p)
{
    check(build->getNbOutputs() == 1, "getNbOutputs == 1");
    for (DataType t : {DataType::kFLOAT, DataType::kHALF})
    {
        DataType in[4] = {t, t, t, t}, out[1] = {DataType::kINT8};
        check(build->getOutputDataTypes(out, 1, in, 4) == 0 && out[0] == t, "getOutputDataTypes keeps the type");
    }
    int64_t const d = 4 * p.k * p.k * p.cout;
    // constant dimensions (a static-shape engine): everything folds to numbers
    {
        ExprBuilder eb;
        auto c = [&](int64_t v) { return eb.impl.constant(v); };
        int64_t const ho = outSize(20, p), wo = outSize(13, p);
        DimsExprs in[4]{};
        in[0].nbDims = 4, in[0].d[0] = c(2), in[0].d[1] = c(4), in[0].d[2] = c(20), in[0].d[3] = c(13);
        in[1].nbDims = 4, in[1].d[0] = c(2), in[1].d[1] = c(16), in[1].d[2] = c(ho), in[1].d[3] = c(wo);
        in[2].nbDims = 4, in[2].d[0] = c(d), in[2].d[1] = c(16), in[2].d[2] = c(1), in[2].d[3] = c(1);
        in[3].nbDims = 1, in[3].d[0] = c(d);
        DimsExprs out[1]{};
        int32_t const rc = build->getOutputShapes(in, 4, nullptr, 0, out, 1, eb);
        bool ok = rc == 0 && out[0].nbDims == 4;
        int64_t const want[4] = {2, p.cout, ho, wo};
        for (int i = 0; ok && i < 4; ++i)
            ok = out[0].d[i] != nullptr && out[0].d[i]->isConstant() && out[0].d[i]->getConstantValue() == want[i];
        check(ok,
            "getOutputShapes, constant dims: (2, " + std::to_string(p.cout) + ", " + std::to_string(ho) + ", "
                + std::to_string(wo) + ")");
    }
    // symbolic N/H/W (a dynamic-shape profile): the output must be N x Cout x Ho x Wo in terms of the inputs' symbols
    {
        ExprBuilder eb;
        auto c = [&](int64_t v) { return eb.impl.constant(v); };
        DimsExprs in[4]{};
        in[0].nbDims = 4, in[0].d[0] = eb.impl.symbol("N"), in[0].d[1] = c(4), in[0].d[2] = eb.impl.symbol("H"),
        in[0].d[3] = eb.impl.symbol("W");
        in[1].nbDims = 4, in[1].d[0] = eb.impl.symbol("N"), in[1].d[1] = c(16), in[1].d[2] = eb.impl.symbol("Ho"),
        in[1].d[3] = eb.impl.symbol("Wo");
        in[2].nbDims = 4, in[2].d[0] = c(d), in[2].d[1] = c(16), in[2].d[2] = c(1), in[2].d[3] = c(1);
        in[3].nbDims = 1, in[3].d[0] = c(d);
        DimsExprs out[1]{};
        int32_t const rc = build->getOutputShapes(in, 4, nullptr, 0, out, 1, eb);
        bool const ok = rc == 0 && out[0].nbDims == 4 && textOf(out[0].d[0]) == "N" && out[0].d[1] != nullptr
            && out[0].d[1]->isConstant() && out[0].d[1]->getConstantValue() == p.cout && textOf(out[0].d[2]) == "Ho"
            && textOf(out[0].d[3]) == "Wo";
        check(ok,
            "getOutputShapes, symbolic dims: (" + textOf(out[0].d[0]) + ", " + textOf(out[0].d[1]) + ", "
                + textOf(out[0].d[2]) + ", " + textOf(out[0].d[3]) + ")");
    }
}

void checkFormats(IPluginV3OneBuild* build, int64_t cout)
{
    // TensorRT asks position by position with the earlier positions already chosen; the contract: linear, FP32 or
    // FP16, one type for all five tensors.
    int checked = 0, wrong = 0;
    for (DataType first : {DataType::kFLOAT, DataType::kHALF})
    {
        for (int32_t pos = 0; pos < 5; ++pos)
        {
            for (int32_t f = 0; f < EnumMax<TensorFormat>(); ++f)
            {
                for (int32_t t = 0; t < EnumMax<DataType>(); ++t)
                {
                    DynamicPluginTensorDesc io[5]{};
                    for (int32_t i = 0; i < 5; ++i)
                        io[i].desc = desc({1, 1, 1, 1}, first);
                    io[pos].desc.format = static_cast<TensorFormat>(f);
                    io[pos].desc.type = static_cast<DataType>(t);
                    bool const type = io[pos].desc.type == DataType::kFLOAT || io[pos].desc.type == DataType::kHALF;
                    bool const expect = io[pos].desc.format == TensorFormat::kLINEAR && type
                        && (pos == 0 || io[pos].desc.type == first);
                    wrong += build->supportsFormatCombination(pos, io, 4, 1) != expect;
                    ++checked;
                }
            }
        }
    }
    check(wrong == 0,
        "supportsFormatCombination: " + std::to_string(checked) + " position/format/type cases, "
            + std::to_string(wrong) + " wrong");
    DynamicPluginTensorDesc io[5]{};
    check(!build->supportsFormatCombination(5, io, 4, 1) && !build->supportsFormatCombination(-1, io, 4, 1),
        "supportsFormatCombination refuses positions out of range");
    // features may be kHWC8 for the pipelined kernel: FP16, Cin % 32 == 0 (and Cm 16, Cout % 16 == 0)
    auto hwc8 = [&](int64_t cin, DataType type, int32_t pos) {
        DynamicPluginTensorDesc d[5]{};
        for (int32_t i = 0; i < 5; ++i)
            d[i].desc = desc({1, i == 0 ? cin : 16, 1, 1}, type);
        d[pos].desc.format = TensorFormat::kHWC8;
        return build->supportsFormatCombination(pos, d, 4, 1);
    };
    check(hwc8(64, DataType::kHALF, 0) == (cout % 16 == 0) && !hwc8(64, DataType::kFLOAT, 0)
            && !hwc8(24, DataType::kHALF, 0) && !hwc8(64, DataType::kHALF, 1) && !hwc8(64, DataType::kHALF, 4),
        "supportsFormatCombination: kHWC8 features only in FP16 with Cin % 32 == 0 and Cout % 16 == 0");
}

std::vector<DynamicPluginTensorDesc> buildDescs(Params const& p, int64_t cin, int64_t cm, DataType type, int64_t rows)
{
    // dynamic N/H/W (-1) with a profile, static channels, as in every madf export
    std::vector<DynamicPluginTensorDesc> io(5);
    std::vector<std::vector<int64_t>> const d = {
        {-1, cin, -1, -1}, {-1, cm, -1, -1}, {rows, cm, 1, 1}, {rows}, {-1, p.cout, -1, -1}};
    for (size_t i = 0; i < io.size(); ++i)
    {
        io[i].desc = desc(d[i], type);
        io[i].min = io[i].opt = io[i].max = dims(d[i]);
        for (int32_t j = 0; j < io[i].desc.dims.nbDims; ++j)
        {
            if (d[i][j] == -1)
                io[i].min.d[j] = 1, io[i].opt.d[j] = 64, io[i].max.d[j] = 256;
        }
    }
    return io;
}

int life(char const* libraryPath, std::vector<std::string> const& args)
{
    RecordingLogger logger;
    LoggerFinder finder(&logger);
    Library lib = load(libraryPath, &finder);
    check(lib.nbCreators == 1, "getCreators gives 1 creator");
    IPluginCreatorV3One* creator = findCreator(lib, "MADFDynamicFilter", "1", "madf");
    check(creator != nullptr, "the registry finds MADFDynamicFilter version 1 in namespace madf");
    if (creator == nullptr || args.size() < 5)
        return 1;
    checkIdentity(creator);

    bool const wide = args[0] == "int64";
    Params p;
    std::vector<std::pair<std::string, int64_t>> attrs;
    for (size_t i = 1; i < 5; ++i)
    {
        std::string const& a = args[i];
        size_t const eq = a.find('=');
        std::string const key = a.substr(0, eq);
        int64_t const v = std::strtoll(a.c_str() + eq + 1, nullptr, 10);
        (key == "k" ? p.k : key == "s" ? p.s : key == "p" ? p.p : p.cout) = v;
        std::string const field = key == "k" ? "kernel_size"
            : key == "s"                     ? "stride"
            : key == "p"                     ? "padding"
                                             : "out_channels";
        attrs.emplace_back(field, v);
    }
    Fields fields(attrs, wide);
    std::unique_ptr<IPluginV3> plugin(creator->createPlugin("enc_conv_1", &fields.fc, TensorRTPhase::kBUILD));
    check(plugin != nullptr, std::string("createPlugin (BUILD) from ") + (wide ? "INT64" : "INT32") + " fields");
    if (!plugin)
        return 1;
    checkCapabilities(plugin.get());
    auto* build = capability<IPluginV3OneBuild>(plugin.get(), PluginCapabilityType::kBUILD);
    checkShapes(build, p);
    checkFormats(build, p.cout);

    int64_t const cin = 32, cm = 16, rows = cin * p.k * p.k * p.cout;   // Cin 32: a window split-K can split
    auto io = buildDescs(p, cin, cm, DataType::kHALF, rows);
    check(build->configurePlugin(io.data(), 4, io.data() + 4, 1) == 0, "configurePlugin (dynamic N/H/W, FP16)");
    // FP32: SIMT only, no workspace; FP16: the tensor-core variants, split-K's workspace for the profile's largest
    // shape (capped at 16 MiB)
    auto io32 = buildDescs(p, cin, cm, DataType::kFLOAT, rows);
    check(build->configurePlugin(io32.data(), 4, io32.data() + 4, 1) == 0 && build->getNbTactics() == 1
            && build->getWorkspaceSize(io32.data(), 4, io32.data() + 4, 1) == 0,
        "FP32: one tactic (SIMT), no workspace");
    check(build->configurePlugin(io.data(), 4, io.data() + 4, 1) == 0, "configurePlugin (dynamic N/H/W, FP16)");
    size_t const workspace = build->getWorkspaceSize(io.data(), 4, io.data() + 4, 1);
    check((workspace > 0) == (p.cout % 16 == 0) && workspace <= (size_t{16} << 20),
        "FP16: split-K workspace (when Cout % 16 == 0), at most 16 MiB");
    int32_t const nbTactics = build->getNbTactics();
    std::vector<int32_t> tactics(static_cast<size_t>(nbTactics > 0 ? nbTactics : 0));
    std::vector<int32_t> const fp16Tactics = {1, 2, 3, 4 | 2 << 8, 4 | 4 << 8, 4 | 8 << 8};
    check(nbTactics == 6 && build->getValidTactics(tactics.data(), nbTactics) == 0 && tactics == fp16Tactics,
        "getValidTactics: SIMT, tensor cores, pipelined, split-K in 2, 4, 8");
    check(build->getValidTactics(tactics.data(), nbTactics - 1) != 0, "getValidTactics refuses a short buffer");
    auto* runtime = capability<IPluginV3OneRuntime>(plugin.get(), PluginCapabilityType::kRUNTIME);
    for (int32_t t : tactics)
        check(runtime->setTactic(t) == 0, "setTactic " + std::to_string(t));

    std::unique_ptr<IPluginV3> copy(plugin->clone());
    check(copy != nullptr
            && serialized(capability<IPluginV3OneRuntime>(copy.get(), PluginCapabilityType::kRUNTIME))
                == serialized(runtime),
        "clone keeps the fields");

    // the engine stores getFieldsToSerialize; deserialization hands it back to createPlugin in the RUNTIME phase
    std::string const stored = serialized(runtime);
    std::printf("serialized %s\n", stored.c_str());
    std::unique_ptr<IPluginV3> restored(
        creator->createPlugin("enc_conv_1", runtime->getFieldsToSerialize(), TensorRTPhase::kRUNTIME));
    auto* restoredRuntime = capability<IPluginV3OneRuntime>(restored.get(), PluginCapabilityType::kRUNTIME);
    check(restored != nullptr && serialized(restoredRuntime) == stored,
        "round trip: createPlugin (RUNTIME) from getFieldsToSerialize gives the same fields");
    if (!restored)
        return 1;

    ResourceContext context;
    std::unique_ptr<IPluginV3> attached(restoredRuntime->attachToContext(&context));
    check(attached != nullptr, "attachToContext gives a plugin for the execution context");
    if (!attached)
        return 1;
    auto* exec = capability<IPluginV3OneRuntime>(attached.get(), PluginCapabilityType::kRUNTIME);

    if (args.size() >= 10 && args[5] == "enqueue")
    {
        std::string const dir = args[6];
        bool const half = args[7] == "fp16";
        Problem q{};
        std::sscanf(args[8].c_str(), "%ld,%ld,%ld,%ld,%ld", &q.n, &q.cin, &q.h, &q.w, &q.cm);
        bool const device = args.size() > 9 && args[9] == "cuda";
        bool const nhwc = args.size() > 10 && args[10] == "hwc8";   // features as kHWC8 (NHWC), FP16
        DataType const type = half ? DataType::kHALF : DataType::kFLOAT;
        auto descs = runtimeDescs(q, p, type);
        if (nhwc)
            descs[0].format = TensorFormat::kHWC8;
        // the tactics and workspace TensorRT's builder would use for exactly this shape and format
        std::vector<DynamicPluginTensorDesc> fixed(5);
        for (size_t i = 0; i < fixed.size(); ++i)
        {
            fixed[i].desc = descs[i];
            fixed[i].min = fixed[i].opt = fixed[i].max = descs[i].dims;
        }
        check(build->configurePlugin(fixed.data(), 4, fixed.data() + 4, 1) == 0, "configurePlugin for the enqueue");
        tactics.assign(static_cast<size_t>(build->getNbTactics()), 0);
        check(build->getValidTactics(tactics.data(), static_cast<int32_t>(tactics.size())) == 0, "tactics");
        size_t const workspaceBytes = build->getWorkspaceSize(fixed.data(), 4, fixed.data() + 4, 1);
        int64_t const ho = outSize(q.h, p), wo = outSize(q.w, p), d = q.cin * p.k * p.k * p.cout;
        size_t const outCount = static_cast<size_t>(q.n * p.cout * ho * wo);
        Buffers buffers(device, half);
        std::vector<float> x = readFloats(dir + "/x.bin", static_cast<size_t>(q.n * q.cin * q.h * q.w));
        if (nhwc)   // NCHW on disk
        {
            std::vector<float> t(x.size());
            for (int64_t i = 0; i < static_cast<int64_t>(x.size()); ++i)
            {
                int64_t const xx = i % q.w, y = i / q.w % q.h, c = i / (q.w * q.h) % q.cin, n = i / (q.w * q.h * q.cin);
                t[static_cast<size_t>(((n * q.h + y) * q.w + xx) * q.cin + c)] = x[static_cast<size_t>(i)];
            }
            x.swap(t);
        }
        void* const workspace = buffers.allocate(workspaceBytes);
        std::printf("enqueue workspace %zu bytes, %zu tactics\n", workspaceBytes, tactics.size());
        void const* inputs[4] = {buffers.upload(x),
            buffers.upload(readFloats(dir + "/m.bin", static_cast<size_t>(q.n * q.cm * ho * wo))),
            buffers.upload(readFloats(dir + "/weight.bin", static_cast<size_t>(d * q.cm))),
            buffers.upload(readFloats(dir + "/bias.bin", static_cast<size_t>(d)))};
        cudaStream_t stream = nullptr;
        if (device)
            check(cudaStreamCreate(&stream) == cudaSuccess, "cudaStreamCreate");
        check(exec->onShapeChange(descs.data(), 4, descs.data() + 4, 1) == 0, "onShapeChange");
        for (int32_t t : tactics)
        {
            void* outputs[1] = {buffers.poisoned(outCount)};
            check(exec->setTactic(t) == 0, "setTactic " + std::to_string(t) + " on the context's plugin");
            int32_t const rc = exec->enqueue(descs.data(), descs.data() + 4, inputs, outputs, workspace, stream);
            if (device)
                check(cudaStreamSynchronize(stream) == cudaSuccess, "cudaStreamSynchronize");
            check(rc == 0, "enqueue tactic " + std::to_string(t) + (half ? " fp16" : " fp32"));
            std::vector<float> const y = buffers.download(outputs[0], outCount);
            std::ofstream(dir + "/out_" + std::to_string(t) + ".bin", std::ios::binary)
                .write(reinterpret_cast<char const*>(y.data()), static_cast<std::streamsize>(y.size() * sizeof(float)));
        }
        if (device)
            cudaStreamDestroy(stream);
    }
    check(logger.errors == 0, "no errors logged on the good path");
    return 0;
}

// ---- refuse -------------------------------------------------------------------------------------------------------
// Each bad input must be answered with an error in the log and a failure value, and the process must live on.
void expectRefusal(RecordingLogger& logger, std::string const& what, std::function<bool()> const& refused)
{
    int const before = logger.errors;
    bool const ok = refused();
    check(ok && logger.errors > before, "refused with a logged error: " + what);
}

int refuse(char const* libraryPath)
{
    RecordingLogger logger;
    LoggerFinder finder(&logger);
    Library lib = load(libraryPath, &finder);
    check(findCreator(lib, "MADFDynamicFilter", "2", "madf") == nullptr, "no creator answers to version 2");
    check(findCreator(lib, "MADFDynamicFilter", "1", "") == nullptr, "no creator answers outside namespace madf");
    IPluginCreatorV3One* creator = findCreator(lib, "MADFDynamicFilter", "1", "madf");
    if (creator == nullptr)
        return 1;
    std::vector<std::pair<std::string, int64_t>> const good = {
        {"kernel_size", 3}, {"stride", 2}, {"padding", 1}, {"out_channels", 8}};
    auto create = [&](PluginFieldCollection const* fc) {
        std::unique_ptr<IPluginV3> p(creator->createPlugin("bad", fc, TensorRTPhase::kBUILD));
        return p == nullptr;
    };
    for (size_t drop = 0; drop < good.size(); ++drop)
    {
        auto attrs = good;
        attrs.erase(attrs.begin() + static_cast<std::ptrdiff_t>(drop));
        Fields f(attrs, false);
        expectRefusal(logger, "missing " + good[drop].first, [&] { return create(&f.fc); });
    }
    auto withValue = [&](std::string const& name, int64_t v, bool wide, std::string const& what) {
        auto attrs = good;
        for (auto& a : attrs)
            if (a.first == name)
                a.second = v;
        Fields f(attrs, wide);
        expectRefusal(logger, what, [&] { return create(&f.fc); });
    };
    withValue("kernel_size", -3, false, "negative kernel_size");
    withValue("stride", 0, true, "zero stride (INT64)");
    withValue("padding", -1, false, "negative padding");
    withValue("out_channels", 0, false, "zero out_channels");
    withValue("kernel_size", int64_t{1} << 40, true, "kernel_size beyond 32 bits (INT64)");
    {
        Fields f(good, false);
        float const k = 3.0F;
        f.fields[0] = PluginField("kernel_size", &k, PluginFieldType::kFLOAT32, 1);
        expectRefusal(logger, "kernel_size of type FLOAT32", [&] { return create(&f.fc); });
        f.fields[0] = PluginField("kernel_size", nullptr, PluginFieldType::kINT32, 1);
        expectRefusal(logger, "kernel_size without data", [&] { return create(&f.fc); });
        int32_t const two[2] = {3, 3};
        f.fields[0] = PluginField("kernel_size", two, PluginFieldType::kINT32, 2);
        expectRefusal(logger, "kernel_size with two values", [&] { return create(&f.fc); });
    }
    {
        Fields f(good, false);
        char const version[] = "2";
        f.fields.emplace_back("plugin_version", version, PluginFieldType::kCHAR, 1);
        f.fc.nbFields = static_cast<int32_t>(f.fields.size());
        f.fc.fields = f.fields.data();
        expectRefusal(logger, "plugin_version 2 passed as a field", [&] { return create(&f.fc); });
    }
    expectRefusal(logger, "no field collection", [&] { return create(nullptr); });

    // bad calls on a good plugin
    Fields f(good, false);
    std::unique_ptr<IPluginV3> plugin(creator->createPlugin("ok", &f.fc, TensorRTPhase::kBUILD));
    check(plugin != nullptr, "a good plugin for the bad calls");
    if (!plugin)
        return 1;
    auto* build = capability<IPluginV3OneBuild>(plugin.get(), PluginCapabilityType::kBUILD);
    auto* runtime = capability<IPluginV3OneRuntime>(plugin.get(), PluginCapabilityType::kRUNTIME);
    Params const p{3, 2, 1, 8};
    {
        auto io = buildDescs(p, 4, 16, DataType::kFLOAT, 4 * 9 * 8 + 1);
        expectRefusal(logger, "configurePlugin with a kernel generator of the wrong size",
            [&] { return build->configurePlugin(io.data(), 4, io.data() + 4, 1) != 0; });
        io[2].desc.dims.nbDims = 2;
        expectRefusal(logger, "configurePlugin with a 2-D weight",
            [&] { return build->configurePlugin(io.data(), 4, io.data() + 4, 1) != 0; });
    }
    {
        ExprBuilder eb;
        DimsExprs in[3]{}, out[1]{};
        check(build->getOutputShapes(in, 3, nullptr, 0, out, 1, eb) != 0, "getOutputShapes refuses 3 inputs");
    }
    expectRefusal(logger, "setTactic 7", [&] { return runtime->setTactic(7) != 0; });
    expectRefusal(logger, "setTactic split-K in 3", [&] { return runtime->setTactic(4 | 3 << 8) != 0; });
    expectRefusal(
        logger, "setTactic pipelined with a split count", [&] { return runtime->setTactic(3 | 2 << 8) != 0; });
    // onShapeChange checks every shape once, before any enqueue: null buffers make any read by a kernel a crash
    Problem const q{1, 4, 9, 9, 16};
    void const* inputs[4] = {nullptr, nullptr, nullptr, nullptr};
    void* outputs[1] = {nullptr};
    expectRefusal(logger, "enqueue before any onShapeChange", [&] {
        auto descs = runtimeDescs(q, p, DataType::kFLOAT);
        return runtime->enqueue(descs.data(), descs.data() + 4, inputs, outputs, nullptr, nullptr) != 0;
    });
    auto shapeChangeWith = [&](std::function<void(std::vector<PluginTensorDesc>&)> const& spoil) {
        auto descs = runtimeDescs(q, p, DataType::kFLOAT);
        spoil(descs);
        return runtime->onShapeChange(descs.data(), 4, descs.data() + 4, 1) != 0;
    };
    expectRefusal(logger, "onShapeChange, mask features on the wrong grid",
        [&] { return shapeChangeWith([](auto& d) { d[1].dims.d[2] += 1; }); });
    expectRefusal(logger, "onShapeChange, weight rows off by one",
        [&] { return shapeChangeWith([](auto& d) { d[2].dims.d[0] -= 1; }); });
    expectRefusal(logger, "onShapeChange, bias rows off by one",
        [&] { return shapeChangeWith([](auto& d) { d[3].dims.d[0] += 1; }); });
    expectRefusal(logger, "onShapeChange, weight with the wrong mask channels",
        [&] { return shapeChangeWith([](auto& d) { d[2].dims.d[1] = 15; }); });
    expectRefusal(logger, "onShapeChange, output with the wrong channels",
        [&] { return shapeChangeWith([](auto& d) { d[4].dims.d[1] = 9; }); });
    expectRefusal(logger, "onShapeChange, mixed FP32 and FP16",
        [&] { return shapeChangeWith([](auto& d) { d[1].type = DataType::kHALF; }); });
    expectRefusal(logger, "onShapeChange, INT8 tensors", [&] {
        return shapeChangeWith([](auto& d) {
            for (auto& t : d)
                t.type = DataType::kINT8;
        });
    });
    expectRefusal(
        logger, "onShapeChange, 3-D features", [&] { return shapeChangeWith([](auto& d) { d[0].dims.nbDims = 3; }); });
    expectRefusal(logger, "onShapeChange, zero-height features",
        [&] { return shapeChangeWith([](auto& d) { d[0].dims.d[2] = 0; }); });
    expectRefusal(logger, "onShapeChange, kHWC8 features no kernel reads (FP32, Cin 4)",
        [&] { return shapeChangeWith([](auto& d) { d[0].format = TensorFormat::kHWC8; }); });
    expectRefusal(logger, "onShapeChange, features in kCHW32",
        [&] { return shapeChangeWith([](auto& d) { d[0].format = TensorFormat::kCHW32; }); });
    {
        // a good shape, then a bad one: the plugin must not launch with the stale good shape
        auto good = runtimeDescs(q, p, DataType::kFLOAT);
        check(runtime->onShapeChange(good.data(), 4, good.data() + 4, 1) == 0, "onShapeChange accepts a good shape");
        shapeChangeWith([](auto& d) { d[2].dims.d[0] -= 1; });
        expectRefusal(logger, "enqueue after a refused onShapeChange",
            [&] { return runtime->enqueue(good.data(), good.data() + 4, inputs, outputs, nullptr, nullptr) != 0; });
    }
    // the timing cache ID: the creation state (TensorRT prefixes the I/O shapes and formats)
    char const* cacheId = build->getTimingCacheID();
    check(cacheId != nullptr && std::string(cacheId) == "k3s2p1o8t2",
        "getTimingCacheID names the attributes and the tactic table: "
            + std::string(cacheId != nullptr ? cacheId : "null"));
    return 0;
}

}   // namespace

int main(int argc, char** argv)
{
    if (argc < 3 || (std::strcmp(argv[2], "life") != 0 && std::strcmp(argv[2], "refuse") != 0))
    {
        std::fprintf(stderr,
            "usage: madf_plugin_harness LIBRARY life int32|int64 k=K s=S p=P cout=C "
            "[enqueue DIR fp32|fp16 N,CIN,H,W,CM host|cuda [hwc8]]\n"
            "       madf_plugin_harness LIBRARY refuse\n");
        return 2;
    }
    std::vector<std::string> const args(argv + 3, argv + argc);
    int const rc = std::strcmp(argv[2], "life") == 0 ? life(argv[1], args) : refuse(argv[1]);
    std::printf("%d failure(s)\n", gFailures);
    return rc != 0 || gFailures != 0 ? 1 : 0;
}
