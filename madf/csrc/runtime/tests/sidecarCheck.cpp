// The sidecar contract from the command line, for tests/test_sidecar_contract.py:
//     madf_sidecar_check PLAN TENSORRT_VERSION FLAVOUR COMPUTE_CAPABILITY GPU_NAME
// prints "ok", or "refused: <the one-line message>" (the same cases the Python runtime is run on).
#include "madf/runtime.h"

#include <fstream>
#include <iostream>
#include <iterator>

int main(int argc, char** argv)
{
    if (argc != 6)
    {
        std::cerr << "usage: madf_sidecar_check PLAN TENSORRT_VERSION FLAVOUR COMPUTE_CAPABILITY GPU_NAME\n";
        return 2;
    }
    std::string const plan = argv[1];
    try
    {
        madf::sidecar::Sidecar const sidecar = madf::sidecar::read(plan);
        std::ifstream in(plan, std::ios::binary);
        madf::sidecar::checkPlan(plan, sidecar, std::string(std::istreambuf_iterator<char>(in), {}));
        madf::sidecar::checkVersion(plan, sidecar, argv[2], argv[3]);
        madf::sidecar::checkGpu(plan, sidecar, argv[5], argv[4]);
        std::cout << "ok\n";
    }
    catch (madf::Error const& error)
    {
        std::cout << "refused: " << error.what() << "\n";
    }
    return 0;
}
