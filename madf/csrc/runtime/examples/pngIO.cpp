#include "pngIO.h"

#include <png.h>

#include <cstdio>
#include <cstring>

namespace madf
{
namespace png
{
namespace
{
std::vector<uint8_t> read(std::string const& path, png_uint_32 format, int32_t& width, int32_t& height)
{
    png_image image;
    std::memset(&image, 0, sizeof(image));
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&image, path.c_str()))
        throw Error(ErrorCode::kFILE, path + ": not a readable PNG (" + image.message + ")");
    image.format = format;
    std::vector<uint8_t> pixels(PNG_IMAGE_SIZE(image));
    if (!png_image_finish_read(&image, nullptr, pixels.data(), 0, nullptr))
        throw Error(ErrorCode::kFILE, path + ": PNG decode failed (" + image.message + ")");
    width = static_cast<int32_t>(image.width);
    height = static_cast<int32_t>(image.height);
    return pixels;
}
} // namespace

ImageU8 readImage(std::string const& path)
{
    ImageU8 out;
    out.pixels = read(path, PNG_FORMAT_RGB, out.width, out.height);
    return out;
}

MaskU8 readMask(std::string const& path, bool invert)
{
    MaskU8 out;
    out.values = read(path, PNG_FORMAT_GRAY, out.width, out.height);
    for (uint8_t& v : out.values)
        v = ((v > 127) != invert) ? 1 : 0;
    return out;
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
} // namespace png
} // namespace madf
