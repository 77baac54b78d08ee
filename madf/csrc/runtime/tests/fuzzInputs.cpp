// A fuzz target over what the C++ runtime takes from outside: PNG files (the example app's reader), images and masks
// whose fields may disagree with their buffers (the batch helpers), crop settings, and sidecar text. The only
// acceptable failure is madf::Error; anything else (another exception, a sanitizer report, an allocation past
// ASan's max_allocation_size_mb) is a bug. Built as a libFuzzer target with clang (-fsanitize=fuzzer), or with any
// compiler against fuzzMain.cpp, the bounded standalone driver CI runs (tests/test_cpp_sanitizers.py).
#include "../examples/pngIO.h"
#include "madf/runtime.h"

#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace
{
// Reads little-endian fields off the front of the input, zeros once it runs out.
struct Reader
{
    uint8_t const* data;
    size_t size;
    template <typename T>
    T take()
    {
        T value{};
        size_t const n = size < sizeof(T) ? size : sizeof(T);
        if (n > 0)
            std::memcpy(&value, data, n);
        data += n, size -= n;
        return value;
    }
    std::vector<uint8_t> rest(size_t most)
    {
        size_t const n = size < most ? size : most;
        std::vector<uint8_t> out(data, data + n);
        data += n, size -= n;
        return out;
    }
};

// Mutations mostly break chunk CRCs, and libpng stops there; fixing them lets the fuzzer reach the header's fields
// and the pixel data (libpng's own fuzzer turns CRC checks off instead, which its simplified API cannot).
std::vector<uint8_t> fixCrcs(std::vector<uint8_t> png)
{
    size_t at = 8;
    while (at + 12 <= png.size())
    {
        uint32_t const length =
            (uint32_t{png[at]} << 24) | (uint32_t{png[at + 1]} << 16) | (uint32_t{png[at + 2]} << 8) | png[at + 3];
        if (length > png.size() - at - 12)
            break;
        uint32_t const crc = static_cast<uint32_t>(crc32(0, &png[at + 4], length + 4));
        for (int i = 0; i < 4; ++i)
            png[at + 8 + length + i] = static_cast<uint8_t>(crc >> (24 - 8 * i));
        at += 12 + length;
    }
    return png;
}

void pngCase(Reader& in, bool mask)
{
    std::vector<uint8_t> const png = fixCrcs(in.rest(1 << 20));
    if (mask)
        madf::png::decodeMask(png.data(), png.size(), "fuzz.png", png.size() % 2 == 1);
    else
        madf::png::decodeImage(png.data(), png.size(), "fuzz.png");
}

// An image and a mask whose declared sizes are free and whose buffers are what the input holds (at most 64 kB).
void pair(Reader& in, madf::ImageU8& image, madf::MaskU8& mask)
{
    image.width = in.take<int32_t>(), image.height = in.take<int32_t>();
    mask.width = in.take<uint8_t>() % 2 ? image.width : in.take<int32_t>();
    mask.height = in.take<uint8_t>() % 2 ? image.height : in.take<int32_t>();
    image.pixels = in.rest(in.take<uint16_t>());
    mask.values = in.rest(in.take<uint16_t>());
}

void batchCase(Reader& in)
{
    int32_t const count = 1 + in.take<uint8_t>() % 3;
    std::vector<madf::ImageU8> images(count);
    std::vector<madf::MaskU8> masks(count);
    for (int32_t n = 0; n < count; ++n)
        pair(in, images[n], masks[n]);
    int32_t const multiple = in.take<int32_t>();
    std::vector<float> image, hole;
    std::vector<uint8_t> bytes, holeBytes;
    int32_t h = 0, w = 0;
    switch (in.take<uint8_t>() % 4)
    {
    case 0: madf::imaging::toContract(images.data(), masks.data(), count, multiple, image, hole, h, w); break;
    case 1: madf::imaging::toUint8Batch(images.data(), masks.data(), count, multiple % 2, bytes, holeBytes); break;
    case 2:   // the round trip an engine makes, its output the contract's size
        madf::imaging::toContract(images.data(), masks.data(), count, multiple, image, hole, h, w);
        madf::imaging::fromContract(image.data(), count - 1, h, w, images[count - 1], masks[count - 1]);
        break;
    default: madf::imaging::paddedSize(images[0].width, multiple); break;
    }
}

void cropCase(Reader& in)
{
    madf::ImageU8 image;
    madf::MaskU8 mask;
    pair(in, image, mask);
    int32_t const multiple = in.take<int32_t>(), margin = in.take<int32_t>(), maxSide = in.take<int32_t>();
    for (madf::imaging::Box const& box : madf::imaging::cropBoxes(mask, multiple, margin, maxSide))
    {
        madf::ImageU8 const piece = madf::imaging::crop(image, box);
        madf::imaging::pasteHoles(image, piece, mask, box);
    }
    madf::imaging::Box const box{in.take<int32_t>(), in.take<int32_t>(), in.take<int32_t>(), in.take<int32_t>()};
    madf::imaging::crop(mask, box);
}

#ifdef MADF_FUZZ_SIDECAR
void sidecarCase(Reader& in)
{
    std::vector<uint8_t> const text = in.rest(1 << 16);
    madf::sidecar::parse("fuzz.plan.json", std::string(text.begin(), text.end()));
}
#endif
}   // namespace

extern "C" int LLVMFuzzerTestOneInput(uint8_t const* data, size_t size)
{
    Reader in{data, size};
    try
    {
        switch (in.take<uint8_t>() % 5)
        {
        case 0: pngCase(in, false); break;
        case 1: pngCase(in, true); break;
        case 2: batchCase(in); break;
        case 3: cropCase(in); break;
#ifdef MADF_FUZZ_SIDECAR
        default: sidecarCase(in); break;
#else
        default: break;
#endif
        }
    }
    catch (madf::Error const&)
    {
        // refused with a message: what bad input should get
    }
    return 0;
}
