// Image <-> contract tensors, mirroring madf/inpaint/imaging.py (pad bottom/right by reflection as numpy's "reflect" does,
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

}   // namespace

void checkSize(int64_t width, int64_t height, std::string const& what)
{
    std::string const size = std::to_string(width) + "x" + std::to_string(height) + " (WxH)";
    if (width <= 0 || height <= 0)
        throw Error(ErrorCode::kINVALID_INPUT, what + " is " + size + ": it has no pixels");
    if (width > limits::kMaxImageSide || height > limits::kMaxImageSide || width * height > limits::kMaxPixels)
        throw Error(ErrorCode::kINVALID_INPUT,
            what + " is " + size + ", past the limit of " + std::to_string(limits::kMaxPixels / 1000000)
                + " megapixels and " + std::to_string(limits::kMaxImageSide) + " pixels a side; downscale it first");
}

void checkMultiple(int64_t multiple, std::string const& what)
{
    if (multiple < 1 || multiple > limits::kMaxSide || (multiple & (multiple - 1)) != 0)
        throw Error(ErrorCode::kINVALID_INPUT,
            what + " " + std::to_string(multiple) + " is not a power of two from 1 to "
                + std::to_string(limits::kMaxSide) + " (2^levels)");
}

int32_t paddedSize(int32_t size, int32_t multiple)
{
    checkMultiple(multiple, "multiple");
    if (size < 0 || size > limits::kMaxImageSide)
        throw Error(ErrorCode::kINVALID_INPUT,
            "size " + std::to_string(size) + " is outside 0.." + std::to_string(limits::kMaxImageSide));
    return (size + multiple - 1) / multiple * multiple;   // < 2^17: no overflow
}

void checkPair(ImageU8 const& image, MaskU8 const& mask)
{
    checkSize(image.width, image.height, "image");
    if (image.pixels.size() != static_cast<size_t>(image.width) * image.height * 3)
        throw Error(ErrorCode::kINVALID_INPUT,
            "image buffer is " + std::to_string(image.pixels.size())
                + " bytes, not width x height x 3 (RGB) = " + std::to_string(int64_t{image.width} * image.height * 3));
    if (mask.width != image.width || mask.height != image.height)
        throw Error(ErrorCode::kINVALID_INPUT,
            "image is " + std::to_string(image.width) + "x" + std::to_string(image.height) + " but its mask is "
                + std::to_string(mask.width) + "x" + std::to_string(mask.height)
                + " (WxH); give a mask of the image's size");
    if (mask.values.size() != static_cast<size_t>(mask.width) * mask.height)
        throw Error(ErrorCode::kINVALID_INPUT,
            "mask buffer is " + std::to_string(mask.values.size())
                + " bytes, not width x height = " + std::to_string(int64_t{mask.width} * mask.height));
}

namespace
{
// Every pair of a batch checked, and all of one size (padded to `multiple` when it is > 0), before the batch's
// arrays are allocated: a struct whose fields disagree with its buffers must not size an allocation.
void checkBatch(ImageU8 const* images, MaskU8 const* masks, int32_t count, int32_t multiple, char const* rule)
{
    if (count <= 0 || images == nullptr || masks == nullptr)
        throw Error(ErrorCode::kINVALID_INPUT, "no images");
    for (int32_t n = 0; n < count; ++n)
    {
        checkPair(images[n], masks[n]);
        bool const same = multiple > 0
            ? paddedSize(images[n].height, multiple) == paddedSize(images[0].height, multiple)
                && paddedSize(images[n].width, multiple) == paddedSize(images[0].width, multiple)
            : images[n].height == images[0].height && images[n].width == images[0].width;
        if (!same)
            throw Error(ErrorCode::kINVALID_INPUT, rule);
    }
}
}   // namespace

void toContract(ImageU8 const* images, MaskU8 const* masks, int32_t count, int32_t multiple, std::vector<float>& image,
    std::vector<float>& mask, int32_t& paddedHeight, int32_t& paddedWidth)
{
    checkBatch(images, masks, count, multiple, "images in one batch must pad to the same size");
    paddedHeight = paddedSize(images[0].height, multiple);
    paddedWidth = paddedSize(images[0].width, multiple);
    size_t const plane = static_cast<size_t>(paddedHeight) * paddedWidth;
    image.assign(static_cast<size_t>(count) * 3 * plane, 0.0F);
    mask.assign(static_cast<size_t>(count) * plane, 0.0F);
    for (int32_t n = 0; n < count; ++n)
    {
        ImageU8 const& img = images[n];
        MaskU8 const& msk = masks[n];
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
    if (index < 0 || paddedHeight < original.height || paddedWidth < original.width)
        throw Error(ErrorCode::kINVALID_INPUT, "fromContract: index must be >= 0 and the padded size hold the image");
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

void toUint8Batch(ImageU8 const* images, MaskU8 const* masks, int32_t count, bool invertedMask,
    std::vector<uint8_t>& image, std::vector<uint8_t>& mask)
{
    checkBatch(images, masks, count, 0, "images in one uint8 batch must have the same size");
    size_t const pixels = static_cast<size_t>(images[0].height) * images[0].width;
    image.resize(static_cast<size_t>(count) * pixels * 3);
    mask.resize(static_cast<size_t>(count) * pixels);
    for (int32_t n = 0; n < count; ++n)
    {
        std::copy(images[n].pixels.begin(), images[n].pixels.end(), image.begin() + n * pixels * 3);
        uint8_t const hole = invertedMask ? 0 : 255;
        std::transform(masks[n].values.begin(), masks[n].values.end(), mask.begin() + n * pixels,
            [hole](uint8_t v) { return v ? hole : static_cast<uint8_t>(255 - hole); });
    }
}

ImageU8 fromUint8Batch(uint8_t const* output, int32_t index, ImageU8 const& original, MaskU8 const& mask)
{
    checkPair(original, mask);
    if (index < 0)
        throw Error(ErrorCode::kINVALID_INPUT, "fromUint8Batch: index must be >= 0");
    ImageU8 result = original;
    size_t const pixels = static_cast<size_t>(original.height) * original.width;
    uint8_t const* item = output + static_cast<size_t>(index) * pixels * 3;
    for (size_t p = 0; p < pixels; ++p)
    {
        if (mask.values[p])   // known pixels stay the original bytes, whatever the engine returned
            std::copy(item + p * 3, item + p * 3 + 3, result.pixels.begin() + p * 3);
    }
    return result;
}

namespace
{
constexpr int32_t kCell = 8;   // hole regions are found on a grid of 8x8 blocks, as in madf/inpaint/strategy.py

int32_t roundUp(int32_t size, int32_t multiple, int32_t limit)
{
    return std::min((size + multiple - 1) / multiple * multiple, limit);
}

// A box side for a hole `extent` long, as madf/inpaint/strategy.py's _side: the hole plus the margin each way, within
// the cap while it still leaves half the margin each way; past that the whole margin (the box runs larger).
int32_t side(int32_t extent, int32_t margin, int32_t multiple, int32_t length, int32_t cap)
{
    int32_t const want = roundUp(extent + 2 * margin, multiple, length);
    if (want <= cap)
        return want;
    return extent + margin <= cap ? cap : want;
}

int32_t floorHalf(int32_t v) { return v >= 0 ? v / 2 : -((1 - v) / 2); }   // Python's v // 2

// A window of `size` centred on [start, end), shifted inward to lie within [0, length).
void place(int32_t start, int32_t end, int32_t size, int32_t length, int32_t& begin, int32_t& finish)
{
    size = std::min(size, length);
    begin = std::min(std::max(floorHalf(start + end - size), 0), length - size);
    finish = begin + size;
}

bool overlap(Box const& a, Box const& b)
{
    return a.top < b.bottom && b.top < a.bottom && a.left < b.right && b.left < a.right;
}

// The bounding box of the hole pixels inside `box` (which holds at least one).
Box tight(MaskU8 const& mask, Box const& box)
{
    Box t{box.bottom, box.right, box.top, box.left};
    for (int32_t y = box.top; y < box.bottom; ++y)
        for (int32_t x = box.left; x < box.right; ++x)
            if (mask.values[static_cast<size_t>(y) * mask.width + x])
            {
                t.top = std::min(t.top, y), t.left = std::min(t.left, x);
                t.bottom = std::max(t.bottom, y + 1), t.right = std::max(t.right, x + 1);
            }
    return t;
}
}   // namespace

std::vector<Box> cropBoxes(MaskU8 const& mask, int32_t multiple, int32_t margin, int32_t maxSide)
{
    checkSize(mask.width, mask.height, "mask");
    if (mask.values.size() != static_cast<size_t>(mask.width) * mask.height)
        throw Error(ErrorCode::kINVALID_INPUT, "mask buffer is not width x height bytes");
    checkMultiple(multiple, "crop multiple");
    if (margin < 0 || margin > limits::kMaxSide || maxSide <= 0)
        throw Error(ErrorCode::kINVALID_INPUT,
            "crop margin must be 0-" + std::to_string(limits::kMaxSide) + " and the largest crop side positive");
    int32_t const h = mask.height, w = mask.width;
    int32_t const gh = (h + kCell - 1) / kCell, gw = (w + kCell - 1) / kCell;
    std::vector<uint8_t> grid(static_cast<size_t>(gh) * gw, 0);
    for (int32_t y = 0; y < h; ++y)
        for (int32_t x = 0; x < w; ++x)
            if (mask.values[static_cast<size_t>(y) * w + x])
                grid[static_cast<size_t>(y / kCell) * gw + x / kCell] = 1;
    // 8-connected regions of the grid (flood fill), each as the tight box of its hole pixels
    std::vector<Box> boxes;
    std::vector<int32_t> stack;
    for (int32_t start = 0; start < gh * gw; ++start)
    {
        if (grid[start] != 1)
            continue;
        Box cells{gh, gw, -1, -1};
        grid[start] = 2;
        stack.assign(1, start);
        while (!stack.empty())
        {
            int32_t const c = stack.back();
            stack.pop_back();
            int32_t const cy = c / gw, cx = c % gw;
            cells.top = std::min(cells.top, cy), cells.left = std::min(cells.left, cx);
            cells.bottom = std::max(cells.bottom, cy + 1), cells.right = std::max(cells.right, cx + 1);
            for (int32_t dy = -1; dy <= 1; ++dy)
                for (int32_t dx = -1; dx <= 1; ++dx)
                {
                    int32_t const ny = cy + dy, nx = cx + dx;
                    if (ny >= 0 && ny < gh && nx >= 0 && nx < gw && grid[static_cast<size_t>(ny) * gw + nx] == 1)
                    {
                        grid[static_cast<size_t>(ny) * gw + nx] = 2;
                        stack.push_back(ny * gw + nx);
                    }
                }
        }
        boxes.push_back(tight(mask,
            {cells.top * kCell, cells.left * kCell, std::min(h, cells.bottom * kCell),
                std::min(w, cells.right * kCell)}));
    }
    int32_t const cap = std::max(multiple, maxSide / multiple * multiple);
    for (bool merged = !boxes.empty(); merged;)
    {
        std::vector<Box> grown;
        for (Box const& b : boxes)
        {
            int32_t const height = side(b.bottom - b.top, margin, multiple, h, cap);
            int32_t const width = side(b.right - b.left, margin, multiple, w, cap);
            Box g{};
            place(b.top, b.bottom, height, h, g.top, g.bottom);
            place(b.left, b.right, width, w, g.left, g.right);
            grown.push_back(g);
        }
        merged = false;
        std::vector<Box> out;
        for (Box const& g : grown)
        {
            auto other = std::find_if(out.begin(), out.end(), [&](Box const& o) { return overlap(g, o); });
            if (other == out.end())
            {
                out.push_back(g);
                continue;
            }
            *other = {std::min(g.top, other->top), std::min(g.left, other->left), std::max(g.bottom, other->bottom),
                std::max(g.right, other->right)};
            merged = true;
        }
        if (merged)
        {
            boxes.clear();
            for (Box const& o : out)
                boxes.push_back(tight(mask, o));
        }
        else
            boxes = out;
    }
    std::sort(boxes.begin(), boxes.end(), [](Box const& a, Box const& b) {
        return a.top != b.top ? a.top < b.top : a.left != b.left ? a.left < b.left : a.bottom < b.bottom;
    });
    return boxes;
}

namespace
{
void checkBox(Box const& box, int32_t width, int32_t height)
{
    if (box.top < 0 || box.left < 0 || box.bottom > height || box.right > width || box.top >= box.bottom
        || box.left >= box.right)
        throw Error(ErrorCode::kINVALID_INPUT,
            "crop box (" + std::to_string(box.top) + ", " + std::to_string(box.left) + ", " + std::to_string(box.bottom)
                + ", " + std::to_string(box.right) + ") is not inside the " + std::to_string(width) + "x"
                + std::to_string(height) + " image");
}
}   // namespace

ImageU8 crop(ImageU8 const& image, Box const& box)
{
    checkSize(image.width, image.height, "image");
    if (image.pixels.size() != static_cast<size_t>(image.width) * image.height * 3)
        throw Error(ErrorCode::kINVALID_INPUT, "image buffer is not width x height x 3 bytes (RGB)");
    checkBox(box, image.width, image.height);
    ImageU8 out{box.right - box.left, box.bottom - box.top, {}};
    out.pixels.resize(static_cast<size_t>(out.width) * out.height * 3);
    for (int32_t y = 0; y < out.height; ++y)
        std::copy_n(&image.pixels[(static_cast<size_t>(box.top + y) * image.width + box.left) * 3],
            static_cast<size_t>(out.width) * 3, &out.pixels[static_cast<size_t>(y) * out.width * 3]);
    return out;
}

MaskU8 crop(MaskU8 const& mask, Box const& box)
{
    checkSize(mask.width, mask.height, "mask");
    if (mask.values.size() != static_cast<size_t>(mask.width) * mask.height)
        throw Error(ErrorCode::kINVALID_INPUT, "mask buffer is not width x height bytes");
    checkBox(box, mask.width, mask.height);
    MaskU8 out{box.right - box.left, box.bottom - box.top, {}};
    out.values.resize(static_cast<size_t>(out.width) * out.height);
    for (int32_t y = 0; y < out.height; ++y)
        std::copy_n(&mask.values[static_cast<size_t>(box.top + y) * mask.width + box.left],
            static_cast<size_t>(out.width), &out.values[static_cast<size_t>(y) * out.width]);
    return out;
}

void pasteHoles(ImageU8& result, ImageU8 const& filled, MaskU8 const& mask, Box const& box)
{
    checkPair(result, mask);
    checkBox(box, mask.width, mask.height);
    if (filled.width != box.right - box.left || filled.height != box.bottom - box.top
        || filled.pixels.size() != static_cast<size_t>(filled.width) * filled.height * 3)
        throw Error(ErrorCode::kINVALID_INPUT, "the filled crop is not the box's size");
    for (int32_t y = box.top; y < box.bottom; ++y)
        for (int32_t x = box.left; x < box.right; ++x)
        {
            size_t const p = static_cast<size_t>(y) * mask.width + x;
            if (!mask.values[p])
                continue;
            size_t const q = (static_cast<size_t>(y - box.top) * filled.width + (x - box.left)) * 3;
            std::copy_n(&filled.pixels[q], 3, &result.pixels[p * 3]);
        }
}

}   // namespace imaging
}   // namespace madf
