// The example app's PNG I/O: lossless round trip, mask thresholding and polarity, atomic write, clear errors.
#include "../examples/pngIO.h"

#include <zlib.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace
{
int gFailures = 0;
void expect(bool ok, std::string const& what)
{
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
    gFailures += ok ? 0 : 1;
}
// A PNG of an 8-bit RGB header declaring width x height and one tiny IDAT: what a crafted file looks like.
std::vector<uint8_t> headerOnlyPng(uint32_t width, uint32_t height)
{
    std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    auto chunk = [&png](char const* type, std::vector<uint8_t> const& data) {
        for (int i = 0; i < 4; ++i)
            png.push_back(static_cast<uint8_t>(data.size() >> (24 - 8 * i)));
        std::vector<uint8_t> body(type, type + 4);
        body.insert(body.end(), data.begin(), data.end());
        png.insert(png.end(), body.begin(), body.end());
        uint32_t const crc = static_cast<uint32_t>(crc32(0, body.data(), static_cast<uInt>(body.size())));
        for (int i = 0; i < 4; ++i)
            png.push_back(static_cast<uint8_t>(crc >> (24 - 8 * i)));
    };
    std::vector<uint8_t> header;
    for (uint32_t v : {width, height})
        for (int i = 0; i < 4; ++i)
            header.push_back(static_cast<uint8_t>(v >> (24 - 8 * i)));
    header.insert(header.end(), {8, 2, 0, 0, 0});
    chunk("IHDR", header);
    chunk("IDAT", {0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01});
    chunk("IEND", {});
    return png;
}
}   // namespace

int main(int argc, char** argv)
{
    std::string const dir = argc > 1 ? argv[1] : ".";
    madf::ImageU8 img{7, 5, std::vector<uint8_t>(7 * 5 * 3)};
    for (size_t i = 0; i < img.pixels.size(); ++i)
        img.pixels[i] = static_cast<uint8_t>(i * 37);
    madf::png::writeImage(dir + "/rt.png", img);
    madf::ImageU8 back = madf::png::readImage(dir + "/rt.png");
    expect(back.width == 7 && back.height == 5 && back.pixels == img.pixels, "PNG round trip is lossless");
    expect(!std::ifstream(dir + "/rt.png.tmp"), "no temp file left behind");

    madf::ImageU8 gray{3, 1, {0, 0, 0, 200, 200, 200, 100, 100, 100}};
    madf::png::writeImage(dir + "/mask.png", gray);
    madf::MaskU8 mask = madf::png::readMask(dir + "/mask.png");
    expect(mask.values == std::vector<uint8_t>({0, 1, 0}), "white = hole");
    expect(madf::png::readMask(dir + "/mask.png", true).values == std::vector<uint8_t>({1, 0, 1}), "inverted");

    std::ofstream(dir + "/bad.png") << "not a png";
    try
    {
        madf::png::readImage(dir + "/bad.png");
        expect(false, "a corrupt PNG is refused");
    }
    catch (madf::Error const& e)
    {
        expect(e.code() == madf::ErrorCode::kFILE, std::string("a corrupt PNG is refused: ") + e.what());
    }
    // a 60-byte file may declare any size: it is checked before the pixels are allocated (under ASan's
    // max_allocation_size_mb in CI, an allocation sized by the header alone would abort this test)
    for (auto const& [side, needle] : {std::pair<uint32_t, char const*>{65535, "past the limit"},
             std::pair<uint32_t, char const*>{10000, "more than its"}})
    {
        std::vector<uint8_t> const png = headerOnlyPng(side, side);
        try
        {
            madf::png::decodeImage(png.data(), png.size(), "bomb.png");
            expect(false, "a " + std::to_string(side) + "-pixel-square header in 60 bytes is refused");
        }
        catch (madf::Error const& e)
        {
            expect(std::string(e.what()).find(needle) != std::string::npos,
                "a " + std::to_string(side) + "-pixel-square header in 60 bytes is refused: " + e.what());
        }
    }
    std::printf("%d failure(s)\n", gFailures);
    return gFailures == 0 ? 0 : 1;
}
