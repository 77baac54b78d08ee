// The example app's PNG I/O: lossless round trip, mask thresholding and polarity, atomic write, clear errors.
#include "../examples/pngIO.h"

#include <cstdio>
#include <fstream>
#include <string>

namespace
{
int gFailures = 0;
void expect(bool ok, std::string const& what)
{
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
    gFailures += ok ? 0 : 1;
}
} // namespace

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
    std::printf("%d failure(s)\n", gFailures);
    return gFailures == 0 ? 0 : 1;
}
