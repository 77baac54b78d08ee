// PNG files <-> madf::ImageU8 / MaskU8 through libpng's simplified API (the example app's I/O).
#ifndef MADF_EXAMPLE_PNG_IO_H
#define MADF_EXAMPLE_PNG_IO_H

#include "madf/runtime.h"

#include <string>

namespace madf
{
namespace png
{
ImageU8 readImage(std::string const& path);                    // any PNG, converted to 8-bit RGB
MaskU8 readMask(std::string const& path, bool invert = false);  // gray > 127 = hole (or known, with invert)
void writeImage(std::string const& path, ImageU8 const& image);  // atomic: a temp file, then rename
} // namespace png
} // namespace madf

#endif
