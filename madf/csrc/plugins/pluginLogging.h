/*
 * Logging for the plugin library without linking libnvinfer: TensorRT hands the library an ILoggerFinder through
 * setLoggerFinder() when it loads it (IPluginRegistry::loadLibrary, trtexec --dynamicPlugins, or a version-compatible
 * plan), and messages go to whatever logger the application gave TensorRT.
 */
#ifndef MADF_PLUGIN_LOGGING_H
#define MADF_PLUGIN_LOGGING_H

#include <NvInferRuntime.h>

namespace madf
{

void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept;
void logError(char const* message) noexcept;
void logVerbose(char const* message) noexcept;

}   // namespace madf

#endif   // MADF_PLUGIN_LOGGING_H
