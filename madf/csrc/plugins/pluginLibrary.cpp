/*
 * The plugin library's only exported symbols (exports.map hides the rest): TensorRT calls getCreators() and
 * setLoggerFinder() when it loads the library, so it registers nothing at static-init time and links no libnvinfer.
 * That is what lets a version-compatible plan carry it (IBuilderConfig::setPluginsToSerialize) to a lean runtime.
 */
#include "pluginLogging.h"
#include "dynamicFilter/dynamicFilterPlugin.h"

#include <mutex>

namespace madf
{
namespace
{
std::mutex gLoggerMutex;
nvinfer1::ILoggerFinder* gLoggerFinder{nullptr};

void log(nvinfer1::ILogger::Severity severity, char const* message) noexcept
{
    std::lock_guard<std::mutex> lock(gLoggerMutex);
    if (gLoggerFinder == nullptr)
        return;
    if (nvinfer1::ILogger* logger = gLoggerFinder->findLogger())
        logger->log(severity, message);
}
}   // namespace

void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept
{
    std::lock_guard<std::mutex> lock(gLoggerMutex);
    gLoggerFinder = finder;
}

void logError(char const* message) noexcept { log(nvinfer1::ILogger::Severity::kERROR, message); }
void logVerbose(char const* message) noexcept { log(nvinfer1::ILogger::Severity::kVERBOSE, message); }

}   // namespace madf

extern "C" __attribute__((visibility("default"))) void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    madf::setLoggerFinder(finder);
}

extern "C" __attribute__((visibility("default"))) nvinfer1::IPluginCreatorInterface* const* getCreators(
    int32_t& nbCreators)
{
    static madf::DynamicFilterPluginCreator dynamicFilterCreator;
    static nvinfer1::IPluginCreatorInterface* const creators[] = {&dynamicFilterCreator};
    nbCreators = static_cast<int32_t>(sizeof(creators) / sizeof(creators[0]));
    return creators;
}
