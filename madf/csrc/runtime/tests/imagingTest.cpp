// The C++ image helpers agree with madf/inpaint/imaging.py: tests/test_cpp_runtime.py feeds this program the same images it
// pads with numpy and compares the printed checksums; here the hand-checkable cases.
#include "madf/runtime.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace
{
int gFailures = 0;
void expect(bool ok, std::string const& what)
{
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
    gFailures += ok ? 0 : 1;
}

// `call` throws madf::Error kINVALID_INPUT whose message holds `needle` (and nothing else escapes it).
template <typename Call>
void refuses(Call call, std::string const& needle, std::string const& what)
{
    try
    {
        call();
        expect(false, what);
    }
    catch (madf::Error const& e)
    {
        expect(e.code() == madf::ErrorCode::kINVALID_INPUT && std::string(e.what()).find(needle) != std::string::npos,
            what + ": " + e.what());
    }
}

madf::ImageU8 ramp(int w, int h)
{
    madf::ImageU8 img{w, h, std::vector<uint8_t>(static_cast<size_t>(w) * h * 3)};
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            for (int c = 0; c < 3; ++c)
                img.pixels[(y * w + x) * 3 + c] = static_cast<uint8_t>(10 * x + y + 100 * c);
    return img;
}
}   // namespace

// `madf_imaging_test boxes MASK H W MULTIPLE MARGIN MAXSIDE`: the crop boxes of a raw H x W byte mask, one per line
// (top left bottom right), for tests/test_cpp_runtime.py to compare with madf/inpaint/strategy.py.
int printBoxes(char** argv)
{
    int const h = std::atoi(argv[3]), w = std::atoi(argv[4]);
    madf::MaskU8 mask{w, h, std::vector<uint8_t>(static_cast<size_t>(w) * h)};
    std::FILE* f = std::fopen(argv[2], "rb");
    if (f == nullptr || std::fread(mask.values.data(), 1, mask.values.size(), f) != mask.values.size())
        return 2;
    std::fclose(f);
    for (auto const& b : madf::imaging::cropBoxes(mask, std::atoi(argv[5]), std::atoi(argv[6]), std::atoi(argv[7])))
        std::printf("%d %d %d %d\n", b.top, b.left, b.bottom, b.right);
    return 0;
}

int main(int argc, char** argv)
{
    using namespace madf;
    if (argc == 8 && std::string(argv[1]) == "boxes")
        return printBoxes(argv);
    expect(imaging::paddedSize(13, 16) == 16 && imaging::paddedSize(32, 16) == 32, "padded sizes");

    // 5 px wide padded to 8: numpy reflect gives columns 0 1 2 3 4 3 2 1
    ImageU8 img = ramp(5, 3);
    MaskU8 mask{5, 3, std::vector<uint8_t>(15, 0)};
    mask.values[7] = 255;   // (x=2, y=1) is a hole
    std::vector<float> image, hole;
    int32_t h = 0, w = 0;
    imaging::toContract(&img, &mask, 1, 8, image, hole, h, w);
    expect(h == 8 && w == 8 && image.size() == 3 * 64 && hole.size() == 64, "contract shape 1x3x8x8");
    int const expectColumns[8] = {0, 1, 2, 3, 4, 3, 2, 1};
    int const expectRows[8] = {0, 1, 2, 1, 0, 1, 2, 1};   // 3 rows reflect with period 4
    bool reflected = true;
    for (int y = 0; y < 8; ++y)
        for (int x = 0; x < 8; ++x)
            reflected &= std::fabs(image[y * 8 + x] * 255.0F - (10 * expectColumns[x] + expectRows[y])) < 1e-3F;
    expect(reflected, "reflect padding repeats like numpy's");
    expect(hole[1 * 8 + 2] == 1.0F && hole[0] == 0.0F && hole[1 * 8 + 6] == 1.0F, "mask binarized and reflected");

    // fromContract: hole pixels from the output (rounded half up, clamped), known pixels exact
    std::vector<float> output(3 * 64, 0.5F);
    output[1 * 8 + 2] = 1.7F;   // channel 0 at the hole: clamps to 255
    ImageU8 out = imaging::fromContract(output.data(), 0, 8, 8, img, mask);
    expect(out.pixels[7 * 3 + 0] == 255 && out.pixels[7 * 3 + 1] == 128, "hole filled, rounded and clamped");
    expect(out.pixels[0] == img.pixels[0] && out.pixels[14 * 3 + 2] == img.pixels[14 * 3 + 2], "known pixels exact");

    // one-pixel-wide images pad by edge, as Python does
    ImageU8 line = ramp(1, 2);
    MaskU8 lineMask{1, 2, {1, 0}};
    imaging::toContract(&line, &lineMask, 1, 4, image, hole, h, w);
    expect(w == 4 && std::fabs(image[3] * 255.0F - line.pixels[0]) < 1e-3F, "1-pixel side pads by edge");

    // uint8 engines: NHWC bytes as they are, masks in the file's polarity, known pixels kept from the original
    ImageU8 pair[2] = {ramp(5, 3), ramp(5, 3)};
    pair[1].pixels[0] = 77;
    MaskU8 pairMasks[2] = {mask, MaskU8{5, 3, std::vector<uint8_t>(15, 1)}};
    std::vector<uint8_t> bytes, maskBytes;
    imaging::toUint8Batch(pair, pairMasks, 2, false, bytes, maskBytes);
    expect(bytes.size() == 2 * 45 && bytes[45] == 77 && bytes[1] == pair[0].pixels[1], "uint8 batch: NHWC bytes");
    expect(maskBytes.size() == 30 && maskBytes[7] == 255 && maskBytes[0] == 0 && maskBytes[15] == 255,
        "uint8 batch: 255 = hole");
    imaging::toUint8Batch(pair, pairMasks, 2, true, bytes, maskBytes);
    expect(maskBytes[7] == 0 && maskBytes[0] == 255 && maskBytes[15] == 0, "uint8 batch: inverted, 255 = keep");
    std::vector<uint8_t> engineOut(2 * 45, 9);
    ImageU8 fromU8 = imaging::fromUint8Batch(engineOut.data(), 0, pair[0], mask);
    expect(fromU8.pixels[7 * 3] == 9 && fromU8.pixels[0] == pair[0].pixels[0],
        "uint8 result: holes from the engine, "
        "known pixels exact");
    try
    {
        ImageU8 mixed[2] = {ramp(5, 3), ramp(6, 3)};
        MaskU8 mixedMasks[2] = {mask, MaskU8{6, 3, std::vector<uint8_t>(18, 0)}};
        imaging::toUint8Batch(mixed, mixedMasks, 2, false, bytes, maskBytes);
        expect(false, "uint8 batch of two sizes refused");
    }
    catch (Error const& e)
    {
        expect(std::string(e.what()).find("same size") != std::string::npos, "uint8 batch of two sizes refused");
    }

    // errors name the problem
    MaskU8 wrong{4, 3, std::vector<uint8_t>(12, 0)};
    try
    {
        imaging::checkPair(img, wrong);
        expect(false, "mismatched mask refused");
    }
    catch (Error const& e)
    {
        expect(e.code() == ErrorCode::kINVALID_INPUT
                && std::string(e.what()).find("5x3 but its mask is 4x3") != std::string::npos,
            "mismatched mask refused: " + std::string(e.what()));
    }
    ImageU8 other = ramp(9, 3);
    ImageU8 both[2] = {img, other};
    MaskU8 masks[2] = {mask, MaskU8{9, 3, std::vector<uint8_t>(27, 0)}};
    try
    {
        imaging::toContract(both, masks, 2, 8, image, hole, h, w);
        expect(false, "mixed padded sizes refused");
    }
    catch (Error const& e)
    {
        expect(std::string(e.what()).find("same size") != std::string::npos, "mixed padded sizes refused");
    }
    // crop boxes: the cases of tests/test_strategy.py, number for number
    auto holes = [](int w, int h, std::vector<imaging::Box> const& rects) {
        MaskU8 m{w, h, std::vector<uint8_t>(static_cast<size_t>(w) * h, 0)};
        for (auto const& r : rects)
            for (int y = r.top; y < r.bottom; ++y)
                for (int x = r.left; x < r.right; ++x)
                    m.values[static_cast<size_t>(y) * w + x] = 255;
        return m;
    };
    auto boxes = imaging::cropBoxes(holes(1200, 1000, {{100, 100, 110, 120}, {600, 900, 640, 930}}), 16, 32, 1024);
    expect(boxes.size() == 2 && boxes[0].top == 65 && boxes[0].left == 62 && boxes[0].bottom == 145
            && boxes[0].right == 158,
        "crop boxes: one per region, grown, rounded up, centred");
    boxes = imaging::cropBoxes(holes(500, 500, {{0, 490, 4, 500}}), 16, 64, 1024);
    expect(boxes.size() == 1 && boxes[0].top == 0 && boxes[0].right == 500 && boxes[0].bottom == 144
            && boxes[0].left == 356,
        "crop boxes: shifted inward at the border");
    boxes = imaging::cropBoxes(
        holes(800, 800, {{100, 100, 110, 110}, {100, 200, 110, 210}, {700, 700, 710, 710}}), 16, 64, 1024);
    expect(boxes.size() == 2 && boxes[0].left <= 100 && boxes[0].right >= 210, "crop boxes: overlapping ones merge");
    ImageU8 photo = ramp(8, 6), filled = ramp(8, 6);
    for (auto& v : filled.pixels)
        v = 7;
    MaskU8 stroke = holes(8, 6, {{2, 2, 4, 5}});
    imaging::Box all{1, 1, 5, 7};
    ImageU8 pasted = photo;
    imaging::pasteHoles(pasted, imaging::crop(filled, all), stroke, all);
    bool exact = true;
    for (int p = 0; p < 48; ++p)
        exact &= stroke.values[p] ? pasted.pixels[p * 3] == 7 : pasted.pixels[p * 3] == photo.pixels[p * 3];
    expect(exact && imaging::crop(stroke, all).width == 6, "crop and paste: hole pixels only");

    // sizes are checked against their buffers and the limits before anything is allocated (run under ASan with
    // max_allocation_size_mb, an allocation sized by a lying struct aborts the test)
    ImageU8 liar{65535, 65535, std::vector<uint8_t>(12)};
    MaskU8 liarMask{65535, 65535, std::vector<uint8_t>(4)};
    refuses([&] { imaging::toContract(&liar, &liarMask, 1, 8, image, hole, h, w); }, "past the limit",
        "toContract: 65535x65535 with 12 bytes refused");
    ImageU8 bigLiar{10000, 10000, std::vector<uint8_t>(12)};
    MaskU8 bigLiarMask{10000, 10000, std::vector<uint8_t>(4)};
    refuses([&] { imaging::toContract(&bigLiar, &bigLiarMask, 1, 8, image, hole, h, w); }, "image buffer is 12 bytes",
        "toContract: a buffer smaller than its fields refused");
    refuses([&] { imaging::toUint8Batch(&bigLiar, &bigLiarMask, 1, false, bytes, maskBytes); }, "image buffer is 12",
        "toUint8Batch: a buffer smaller than its fields refused");
    ImageU8 pairLiar[2] = {ramp(5, 3), bigLiar};
    MaskU8 pairLiarMasks[2] = {mask, bigLiarMask};
    refuses([&] { imaging::toUint8Batch(pairLiar, pairLiarMasks, 2, false, bytes, maskBytes); }, "image buffer",
        "toUint8Batch: a lying second item refused before the batch is allocated");
    ImageU8 negative{-5, 3, {}};
    refuses([&] { imaging::checkPair(negative, mask); }, "no pixels", "negative width refused");
    refuses([&] { imaging::paddedSize(2147483647, 16); }, "outside", "paddedSize: no signed overflow");
    refuses([&] { imaging::paddedSize(13, 0); }, "power of two", "paddedSize: multiple 0 refused");
    refuses([&] { imaging::paddedSize(13, -8); }, "power of two", "paddedSize: negative multiple refused");
    refuses([&] { imaging::paddedSize(13, 24); }, "power of two", "paddedSize: multiple 24 refused");
    MaskU8 dot = holes(64, 64, {{10, 10, 12, 12}});
    refuses([&] { imaging::cropBoxes(dot, 16, 2147483647, 1024); }, "crop margin",
        "cropBoxes: a huge margin refused, no signed overflow");
    expect(imaging::cropBoxes(dot, 16, 16384, 1024).size() == 1, "cropBoxes: the largest margin still works");
    refuses(
        [&] {
            imaging::crop(photo, imaging::Box{0, 0, 7, 9});
        },
        "not inside", "crop: a box past the image refused");
    refuses(
        [&] {
            imaging::pasteHoles(pasted, filled, stroke, imaging::Box{1, 1, 5, 7});
        },
        "box's size", "pasteHoles: a crop of another size refused");
    refuses([&] { imaging::checkSize(65536, 1, "image"); }, "65535 pixels a side", "a side past 65535 refused");
    refuses([&] { imaging::checkSize(20000, 10000, "image"); }, "megapixels", "200 megapixels refused");

    std::printf("%d failure(s)\n", gFailures);
    return gFailures == 0 ? 0 : 1;
}
