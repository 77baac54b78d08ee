// Inpaint PNG files with a TensorRT engine from madf-build:
//   madf_inpaint --engine places2.plan [--plugin-lib libmadf_plugins.so] [--invert-mask] IMAGE MASK OUTPUT [...]
// (triples of image, mask, output; white mask = hole). Exit status 1 with a one-line message on any error.
#include "madf/runtime.h"
#include "pngIO.h"

#include <cstring>
#include <iostream>

int main(int argc, char** argv)
{
    madf::EngineOptions options;
    std::string plan;
    bool invert = false;
    std::vector<std::string> files;
    for (int i = 1; i < argc; ++i)
    {
        std::string const arg = argv[i];
        if (arg == "--engine" && i + 1 < argc)
            plan = argv[++i];
        else if (arg == "--plugin-lib" && i + 1 < argc)
            options.pluginLibraries.emplace_back(argv[++i]);
        else if (arg == "--device" && i + 1 < argc)
            options.device = std::atoi(argv[++i]);
        else if (arg == "--invert-mask")
            invert = true;
        else
            files.push_back(arg);
    }
    if (plan.empty() || files.empty() || files.size() % 3 != 0)
    {
        std::cerr << "usage: madf_inpaint --engine PLAN [--plugin-lib LIB] [--device N] [--invert-mask] "
                     "IMAGE MASK OUTPUT [IMAGE MASK OUTPUT ...]\n";
        return 2;
    }
    try
    {
        std::vector<madf::ImageU8> images;
        std::vector<madf::MaskU8> masks;
        for (size_t i = 0; i < files.size(); i += 3)
        {
            images.push_back(madf::png::readImage(files[i]));
            masks.push_back(madf::png::readMask(files[i + 1], invert));
            madf::imaging::checkPair(images.back(), masks.back());
        }
        madf::Engine engine(plan, options);
        std::vector<madf::ImageU8> results = engine.inpaint(images, masks);
        for (size_t i = 0; i < results.size(); ++i)
        {
            madf::png::writeImage(files[3 * i + 2], results[i]);
            std::cout << "wrote " << files[3 * i + 2] << "\n";
        }
    }
    catch (madf::Error const& e)
    {
        std::cerr << "Error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
