// PNG files <-> madf::ImageU8 / MaskU8 through libpng's simplified API (the example app's I/O).
#ifndef MADF_EXAMPLE_PNG_IO_H
#define MADF_EXAMPLE_PNG_IO_H

#include "madf/runtime.h"

#include <cstddef>
#include <cstdint>
#include <string>

namespace madf
{
namespace png
{
// A PNG's bytes; `label` names it in errors. The declared size is checked before the pixels are allocated.
ImageU8 decodeImage(uint8_t const* data, size_t size, std::string const& label);
MaskU8 decodeMask(uint8_t const* data, size_t size, std::string const& label, bool invert = false);
ImageU8 readImage(std::string const& path);                       // any PNG, converted to 8-bit RGB
MaskU8 readMask(std::string const& path, bool invert = false);    // gray > 127 = hole (or known, with invert)
void writeImage(std::string const& path, ImageU8 const& image);   // atomic: a temp file, then rename
}   // namespace png
}   // namespace madf

#endif
