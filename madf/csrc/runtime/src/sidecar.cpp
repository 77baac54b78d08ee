// The sidecar contract of madf/engines/sidecar.py in C++: the same checks, in the same order, with the same messages.
// tests/test_sidecar_contract.py runs both on every case of tests/fixtures/sidecars.json.
#include "madf/runtime.h"

#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <set>
#include <vector>

namespace madf
{
namespace sidecar
{
namespace
{
using nlohmann::json;

char const* const kFormat = "madf-engine/1";
// What every reader relies on; the same list as madf.engines.sidecar.REQUIRED (a test compares them).
std::array<char const*, 9> const kRequired = {"engine.bytes", "engine.sha256", "multiple", "contract", "precision",
    "lowering", "profile", "tensorrt.backend", "tensorrt.version"};
char const* const kRebuild = "rebuild the engine with madf-build";

[[noreturn]] void refuse(std::string const& message) { throw Error(ErrorCode::kFILE, message); }

// Python's repr of a plain string: what the Python messages print for a key or a field.
std::string pyRepr(std::string const& text) { return "'" + text + "'"; }

json const* find(json const& root, std::string const& dotted)
{
    json const* node = &root;
    size_t start = 0;
    while (true)
    {
        size_t const dot = dotted.find('.', start);
        std::string const part = dotted.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
        if (!node->is_object() || !node->contains(part))
            return nullptr;
        node = &(*node)[part];
        if (dot == std::string::npos)
            return node->is_null() ? nullptr : node;
        start = dot + 1;
    }
}

std::string text(json const& node) { return node.is_string() ? node.get<std::string>() : node.dump(); }

std::string release(std::string const& version)
{
    // major.minor.patch: a plan is tied to a TensorRT release, not to its build number
    size_t dots = 0;
    for (size_t i = 0; i < version.size(); ++i)
    {
        if (version[i] == '.' && ++dots == 3)
            return version.substr(0, i);
    }
    return version;
}

std::string sha256Hex(std::string const& data)
{
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    unsigned int length = 0;
    if (EVP_Digest(data.data(), data.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1)
        throw Error(ErrorCode::kFILE, "OpenSSL could not compute a SHA-256");
    std::string hex;
    char byte[3];
    for (unsigned int i = 0; i < length; ++i)
    {
        std::snprintf(byte, sizeof(byte), "%02x", digest[i]);
        hex += byte;
    }
    return hex;
}
}   // namespace

Sidecar parse(std::string const& sidecarPath, std::string const& content)
{
    // nlohmann keeps the last of a key given twice; a sidecar with two values for one key is refused instead
    std::vector<std::set<std::string>> open;
    std::string twice;
    json::parser_callback_t const watch = [&](int, json::parse_event_t event, json& parsed) {
        if (event == json::parse_event_t::object_start)
            open.emplace_back();
        else if (event == json::parse_event_t::object_end && !open.empty())
            open.pop_back();
        else if (event == json::parse_event_t::key && !open.empty()
            && !open.back().insert(parsed.get<std::string>()).second && twice.empty())
            twice = parsed.get<std::string>();
        return true;
    };
    json const root = json::parse(content, watch, /*allow_exceptions=*/false);
    if (root.is_discarded())
        refuse(sidecarPath + " is not valid JSON; " + kRebuild);
    if (!twice.empty())
        refuse(sidecarPath + " gives the key " + pyRepr(twice) + " twice (edited by hand, or written by another tool); "
            + kRebuild);
    json const* format = root.is_object() ? find(root, "format") : nullptr;
    if (format == nullptr || !format->is_string() || format->get<std::string>() != kFormat)
        refuse(sidecarPath + " is not a " + kFormat + " sidecar; rebuild the engine with this madf-build");
    for (char const* field : kRequired)
    {
        if (find(root, field) == nullptr)
            refuse(sidecarPath + " lacks the field " + pyRepr(field) + " (edited by hand, or written by another tool); "
                + kRebuild);
    }
    Sidecar out;
    json const& bytes = *find(root, "engine.bytes");
    out.bytes = bytes.is_number_integer() ? bytes.get<int64_t>() : -1;
    out.sha256 = text(*find(root, "engine.sha256"));
    // the pad multiple divides every size the runtime computes: a power of two within the profile's bound
    json const& multiple = *find(root, "multiple");
    int64_t const value = multiple.is_number_integer() ? multiple.get<int64_t>() : 0;
    if (value < 1 || value > limits::kMaxSide || (value & (value - 1)) != 0)
        refuse(sidecarPath + " gives multiple " + multiple.dump() + ", not a power of two from 1 to "
            + std::to_string(limits::kMaxSide) + " (2^levels); " + kRebuild);
    out.multiple = static_cast<int32_t>(value);
    out.backend = text(*find(root, "tensorrt.backend"));
    out.version = text(*find(root, "tensorrt.version"));
    json const* compatible = find(root, "version_compatible");
    out.versionCompatible = compatible != nullptr && compatible->is_boolean() && compatible->get<bool>();
    if (json const* plugins = find(root, "plugins"); plugins != nullptr && plugins->is_array())
    {
        for (json const& plugin : *plugins)
        {
            json const* serialized = find(plugin, "serialized");
            out.pluginsCarried |=
                out.versionCompatible && serialized != nullptr && serialized->is_boolean() && serialized->get<bool>();
        }
    }
    if (json const* cc = find(root, "target.compute_capability"))
        out.targetComputeCapability = text(*cc);
    if (json const* gpu = find(root, "target.gpu"))
        out.targetGpu = text(*gpu);
    if (json const* io = find(root, "io"))
        out.io = text(*io);
    if (json const* mask = find(root, "mask"))
        out.mask = text(*mask);
    out.lowering = text(*find(root, "lowering"));
    out.precision = text(*find(root, "precision"));
    return out;
}

Sidecar read(std::string const& planPath)
{
    std::string const path = planPath + ".json";
    std::ifstream in(path, std::ios::binary);
    if (!in)
        refuse(path + " not found: engines carry a sidecar JSON from madf-build; " + kRebuild);
    return parse(path, std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()));
}

void checkPlan(std::string const& planPath, Sidecar const& sidecar, std::string const& plan)
{
    if (static_cast<int64_t>(plan.size()) != sidecar.bytes)
        refuse(planPath + " is " + std::to_string(plan.size()) + " bytes, its sidecar says "
            + std::to_string(sidecar.bytes)
            + ": the file is truncated or was replaced; copy it again or rebuild it "
              "with madf-build");
    if (sha256Hex(plan) != sidecar.sha256)
        refuse(planPath
            + " does not match the sha256 in its sidecar: the file is corrupt or was modified; copy it "
              "again or rebuild it with madf-build");
}

void checkVersion(
    std::string const& planPath, Sidecar const& sidecar, std::string const& version, std::string const& flavour)
{
    if (flavour == "lean" || flavour == "dispatch" || sidecar.versionCompatible)
        return;   // TensorRT checks compatibility itself (same major version line)
    if (release(version) != release(sidecar.version))
        throw Error(ErrorCode::kENGINE,
            planPath + " was built with " + sidecar.backend + " " + sidecar.version + ", this is " + version
                + ": rebuild it here with madf-build, or build it with --version-compatible");
}

void checkGpu(std::string const& planPath, Sidecar const& sidecar, std::string const& gpuName,
    std::string const& computeCapability)
{
    if (sidecar.targetComputeCapability.empty() || sidecar.targetComputeCapability == computeCapability)
        return;
    std::string const builtFor =
        "SM " + sidecar.targetComputeCapability + (sidecar.targetGpu.empty() ? "" : " (" + sidecar.targetGpu + ")");
    throw Error(ErrorCode::kENGINE,
        planPath + " was built for " + builtFor + ", this GPU is SM " + computeCapability + " (" + gpuName
            + "): rebuild the engine for this GPU with madf-build");
}
}   // namespace sidecar
}   // namespace madf
