// Image <-> contract tensors, mirroring madf/imaging.py (pad bottom/right by reflection as numpy's "reflect" does,
// repeating for pads longer than the image; edge for 1-pixel sides; round-half-up to 8 bits; known pixels exact).
#include "madf/runtime.h"

#include <algorithm>
#include <string>

namespace madf
{
namespace imaging
{
namespace
{

int32_t reflectIndex(int32_t i, int32_t n)
{
    if (i < n)
        return i;
    if (n == 1)
        return 0;
    int32_t const period = 2 * (n - 1);
    int32_t const j = i % period;
    return j < n ? j : period - j;
}

uint8_t toByte(float v)
{
    float const c = std::min(1.0F, std::max(0.0F, v));
    return static_cast<uint8_t>(c * 255.0F + 0.5F);
}

} // namespace

int32_t paddedSize(int32_t size, int32_t multiple)
{
    if (multiple <= 0)
        throw Error(ErrorCode::kINVALID_INPUT, "multiple must be positive");
    return (size + multiple - 1) / multiple * multiple;
}

void checkPair(ImageU8 const& image, MaskU8 const& mask)
{
    if (image.width <= 0 || image.height <= 0)
        throw Error(ErrorCode::kINVALID_INPUT, "image has no pixels");
    if (image.pixels.size() != static_cast<size_t>(image.width) * image.height * 3)
        throw Error(ErrorCode::kINVALID_INPUT, "image buffer is not width x height x 3 bytes (RGB)");
    if (mask.width != image.width || mask.height != image.height)
        throw Error(ErrorCode::kINVALID_INPUT,
            "image is " + std::to_string(image.width) + "x" + std::to_string(image.height) + " but its mask is "
                + std::to_string(mask.width) + "x" + std::to_string(mask.height)
                + " (WxH); give a mask of the image's size");
    if (mask.values.size() != static_cast<size_t>(mask.width) * mask.height)
        throw Error(ErrorCode::kINVALID_INPUT, "mask buffer is not width x height bytes");
}

void toContract(ImageU8 const* images, MaskU8 const* masks, int32_t count, int32_t multiple, std::vector<float>& image,
    std::vector<float>& mask, int32_t& paddedHeight, int32_t& paddedWidth)
{
    if (count <= 0)
        throw Error(ErrorCode::kINVALID_INPUT, "no images");
    paddedHeight = paddedSize(images[0].height, multiple);
    paddedWidth = paddedSize(images[0].width, multiple);
    size_t const plane = static_cast<size_t>(paddedHeight) * paddedWidth;
    image.assign(static_cast<size_t>(count) * 3 * plane, 0.0F);
    mask.assign(static_cast<size_t>(count) * plane, 0.0F);
    for (int32_t n = 0; n < count; ++n)
    {
        ImageU8 const& img = images[n];
        MaskU8 const& msk = masks[n];
        checkPair(img, msk);
        if (paddedSize(img.height, multiple) != paddedHeight || paddedSize(img.width, multiple) != paddedWidth)
            throw Error(ErrorCode::kINVALID_INPUT, "images in one batch must pad to the same size");
        for (int32_t y = 0; y < paddedHeight; ++y)
        {
            int32_t const sy = reflectIndex(y, img.height);
            for (int32_t x = 0; x < paddedWidth; ++x)
            {
                int32_t const sx = reflectIndex(x, img.width);
                size_t const src = static_cast<size_t>(sy) * img.width + sx;
                size_t const dst = static_cast<size_t>(y) * paddedWidth + x;
                for (int32_t c = 0; c < 3; ++c)
                    image[(static_cast<size_t>(n) * 3 + c) * plane + dst] = img.pixels[src * 3 + c] / 255.0F;
                mask[static_cast<size_t>(n) * plane + dst] = msk.values[src] ? 1.0F : 0.0F;
            }
        }
    }
}

ImageU8 fromContract(float const* output, int32_t index, int32_t paddedHeight, int32_t paddedWidth,
    ImageU8 const& original, MaskU8 const& mask)
{
    checkPair(original, mask);
    ImageU8 result = original;
    size_t const plane = static_cast<size_t>(paddedHeight) * paddedWidth;
    float const* item = output + static_cast<size_t>(index) * 3 * plane;
    for (int32_t y = 0; y < original.height; ++y)
    {
        for (int32_t x = 0; x < original.width; ++x)
        {
            size_t const p = static_cast<size_t>(y) * original.width + x;
            if (!mask.values[p])
                continue;   // known pixel: the original bytes
            for (int32_t c = 0; c < 3; ++c)
                result.pixels[p * 3 + c] = toByte(item[c * plane + static_cast<size_t>(y) * paddedWidth + x]);
        }
    }
    return result;
}

} // namespace imaging
} // namespace madf
