#include "pngIO.h"

#include <png.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

namespace madf
{
namespace png
{
namespace
{
// The header first: its declared size is checked (imaging::checkSize) before the pixels are allocated, so a 60-byte
// file declaring 65535x65535 is refused, not given 12 GB.
std::vector<uint8_t> decode(
    uint8_t const* data, size_t size, std::string const& label, png_uint_32 format, int32_t& width, int32_t& height)
{
    png_image image;
    std::memset(&image, 0, sizeof(image));
    image.version = PNG_IMAGE_VERSION;
    if (data == nullptr || !png_image_begin_read_from_memory(&image, data, size))
        throw Error(ErrorCode::kFILE, label + ": not a readable PNG (" + image.message + ")");
    image.format = format;
    try
    {
        imaging::checkSize(image.width, image.height, label);
        // deflate packs at most 1032 bytes into one, and an 8-bit RGB pixel unpacks from as little as 1 bit (24x):
        // a size past that bound cannot come from this file's bytes (truncated, or made to exhaust memory)
        if (PNG_IMAGE_SIZE(image) > size * 1032ULL * 24ULL)
            throw Error(ErrorCode::kFILE,
                label + " declares " + std::to_string(image.width) + "x" + std::to_string(image.height)
                    + " pixels, more than its " + std::to_string(size)
                    + " bytes can hold: the file is truncated or damaged");
    }
    catch (Error const&)
    {
        png_image_free(&image);
        throw;
    }
    std::vector<uint8_t> pixels(PNG_IMAGE_SIZE(image));
    if (!png_image_finish_read(&image, nullptr, pixels.data(), 0, nullptr))
        throw Error(ErrorCode::kFILE, label + ": PNG decode failed (" + image.message + ")");
    width = static_cast<int32_t>(image.width);
    height = static_cast<int32_t>(image.height);
    return pixels;
}

std::vector<uint8_t> readFile(std::string const& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw Error(ErrorCode::kFILE, path + ": cannot open it");
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

MaskU8 toMask(std::vector<uint8_t> gray, int32_t width, int32_t height, bool invert)
{
    for (uint8_t& v : gray)
        v = ((v > 127) != invert) ? 1 : 0;
    return MaskU8{width, height, std::move(gray)};
}
}   // namespace

ImageU8 decodeImage(uint8_t const* data, size_t size, std::string const& label)
{
    ImageU8 out;
    out.pixels = decode(data, size, label, PNG_FORMAT_RGB, out.width, out.height);
    return out;
}

MaskU8 decodeMask(uint8_t const* data, size_t size, std::string const& label, bool invert)
{
    int32_t width = 0, height = 0;
    std::vector<uint8_t> gray = decode(data, size, label, PNG_FORMAT_GRAY, width, height);
    return toMask(std::move(gray), width, height, invert);
}

ImageU8 readImage(std::string const& path)
{
    std::vector<uint8_t> const bytes = readFile(path);
    return decodeImage(bytes.data(), bytes.size(), path);
}

MaskU8 readMask(std::string const& path, bool invert)
{
    std::vector<uint8_t> const bytes = readFile(path);
    return decodeMask(bytes.data(), bytes.size(), path, invert);
}

void writeImage(std::string const& path, ImageU8 const& image)
{
    png_image png;
    std::memset(&png, 0, sizeof(png));
    png.version = PNG_IMAGE_VERSION;
    png.width = static_cast<png_uint_32>(image.width);
    png.height = static_cast<png_uint_32>(image.height);
    png.format = PNG_FORMAT_RGB;
    std::string const tmp = path + ".tmp";
    if (!png_image_write_to_file(&png, tmp.c_str(), 0, image.pixels.data(), 0, nullptr))
    {
        std::remove(tmp.c_str());
        throw Error(ErrorCode::kFILE, path + ": cannot write PNG (" + png.message + ")");
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
    {
        std::remove(tmp.c_str());
        throw Error(ErrorCode::kFILE, path + ": cannot move the written PNG into place");
    }
}
}   // namespace png
}   // namespace madf
