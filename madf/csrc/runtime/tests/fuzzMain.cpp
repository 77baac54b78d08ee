// A bounded standalone driver for fuzzInputs.cpp where libFuzzer is not at hand (GCC): runs every seed file, then
// random mutations of them (bit flips, interesting values, cut and repeated runs, splices) for the given seconds,
// with a fixed seed. An input that fails (a sanitizer report, an escaped exception, a signal) is written to
// CRASH_DIR/crash for replay; run it with UBSAN_OPTIONS=abort_on_error=1 so UBSan's reports abort too.
//   madf_fuzz_inputs SECONDS SEED CRASH_DIR SEED_FILE...
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <csignal>
#include <exception>

#include <fcntl.h>
#include <unistd.h>

extern "C" int LLVMFuzzerTestOneInput(uint8_t const* data, size_t size);
// The sanitizers' hook, called before they abort (absent without them: then only std::terminate is caught).
extern "C" void __sanitizer_set_death_callback(void (*callback)()) __attribute__((weak));

namespace
{
using Bytes = std::vector<uint8_t>;

Bytes mutate(Bytes input, std::vector<Bytes> const& corpus, std::mt19937_64& rng)
{
    auto pick = [&](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
    int const steps = 1 + static_cast<int>(rng() % 4);
    for (int step = 0; step < steps; ++step)
    {
        switch (rng() % 6)
        {
        case 0:   // flip a bit
            if (!input.empty())
                input[pick(input.size())] ^= static_cast<uint8_t>(1U << (rng() % 8));
            break;
        case 1:   // an interesting 32-bit value (sizes, signs, overflows) at any offset
        {
            static uint32_t const values[] = {
                0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 16384, 65535, 65536};
            uint32_t const v = values[rng() % (sizeof(values) / sizeof(values[0]))];
            size_t const at = pick(input.size() + 1);
            bool const big = rng() % 2;   // PNG fields are big-endian, the batch fields little-endian
            for (int i = 0; i < 4; ++i)
            {
                uint8_t const byte = static_cast<uint8_t>(v >> (big ? 24 - 8 * i : 8 * i));
                if (at + i < input.size())
                    input[at + i] = byte;
                else
                    input.push_back(byte);
            }
            break;
        }
        case 2:   // cut a run
            if (input.size() > 1)
            {
                size_t const at = pick(input.size()), n = 1 + pick(std::min<size_t>(64, input.size() - at));
                input.erase(input.begin() + at, input.begin() + std::min(input.size(), at + n));
            }
            break;
        case 3:   // repeat a run
            if (!input.empty() && input.size() < (1 << 16))
            {
                size_t const at = pick(input.size()), n = 1 + pick(std::min<size_t>(64, input.size() - at));
                Bytes const run(input.begin() + at, input.begin() + std::min(input.size(), at + n));
                input.insert(input.begin() + pick(input.size() + 1), run.begin(), run.end());
            }
            break;
        case 4:   // splice another seed's tail
        {
            Bytes const& other = corpus[pick(corpus.size())];
            if (!other.empty())
            {
                size_t const at = pick(input.size() + 1), from = pick(other.size());
                input.resize(at);
                input.insert(input.end(), other.begin() + from, other.end());
            }
            break;
        }
        default:   // a random byte
            if (!input.empty())
                input[pick(input.size())] = static_cast<uint8_t>(rng());
            break;
        }
    }
    return input;
}

Bytes const* gCurrent = nullptr;
std::string gCrashPath;

// Async-signal-safe: open/write/close only.
void saveCurrent()
{
    static char const note[] = "fuzz: the failing input was written to CRASH_DIR/crash\n";
    if (gCurrent == nullptr)
        return;
    int const fd = open(gCrashPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0)
    {
        ssize_t const ignored = write(fd, gCurrent->data(), gCurrent->size());
        (void)ignored;
        close(fd);
    }
    ssize_t const ignored = write(2, note, sizeof(note) - 1);
    (void)ignored;
    gCurrent = nullptr;
}

void onSignal(int signal)
{
    saveCurrent();
    std::signal(signal, SIG_DFL);
    std::raise(signal);
}

void run(Bytes const& input)
{
    gCurrent = &input;
    LLVMFuzzerTestOneInput(input.data(), input.size());
    gCurrent = nullptr;
}
}   // namespace

int main(int argc, char** argv)
{
    if (argc < 5)
    {
        std::fprintf(stderr, "usage: madf_fuzz_inputs SECONDS SEED CRASH_DIR SEED_FILE...\n");
        return 2;
    }
    double const seconds = std::atof(argv[1]);
    std::mt19937_64 rng(std::strtoull(argv[2], nullptr, 10));
    gCrashPath = std::string(argv[3]) + "/crash";
    if (__sanitizer_set_death_callback != nullptr)
        __sanitizer_set_death_callback(saveCurrent);
    for (int signal : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL})
        std::signal(signal, onSignal);
    std::set_terminate([] {
        saveCurrent();
        std::abort();
    });
    std::vector<Bytes> corpus;
    for (int i = 4; i < argc; ++i)
    {
        std::ifstream in(argv[i], std::ios::binary);
        corpus.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    long runs = 0;
    for (Bytes const& seed : corpus)   // every seed as it is first
        run(seed), ++runs;
    auto const stop = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < stop)
    {
        Bytes const input = mutate(corpus[static_cast<size_t>(rng() % corpus.size())], corpus, rng);
        run(input);
        if (++runs % 64 == 0 && input.size() < 4096)
            corpus.push_back(input);   // a growing pool: mutations of mutations reach deeper
    }
    std::printf("%ld inputs, no failure\n", runs);
    return 0;
}
