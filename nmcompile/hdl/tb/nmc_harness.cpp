// Verilator harness of the nmcompile FPGA emulator: the RTL is driven only through its UART pins.
//
//   Vnmc_top            bytes on stdin go to uart_rx bit by bit; bytes decoded from uart_tx go to stdout
//   Vnmc_top --pty      opens a pseudo-terminal, prints "PTY <path>" on stdout, bridges it to the pins
//
// Plusargs (+blank: start without the $readmemh images) are passed to the model. The UART runs at
// NMC_CLKS_PER_BIT clock cycles per bit (the design's CLKS_PER_BIT, set at build time). On exit the harness
// prints "cycles <n>" on stderr. Run it in the project directory: the memory images are read from there.
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <string>
#include <termios.h>
#include <unistd.h>

#include "Vnmc_top.h"
#include "verilated.h"

#ifndef NMC_CLKS_PER_BIT
#define NMC_CLKS_PER_BIT 4
#endif

namespace {

constexpr int kClksPerBit = NMC_CLKS_PER_BIT;

// Serialises bytes onto the core's uart_rx line (8N1, LSB first).
struct LineDriver {
    std::deque<uint8_t> pending;
    int bit = -1;          // -1 idle, 0 start, 1..8 data, 9 stop
    int clocks = 0;
    uint8_t current = 0;

    bool busy() const { return bit >= 0 || !pending.empty(); }

    int level() {
        if (bit < 0) {
            if (pending.empty()) return 1;
            current = pending.front();
            pending.pop_front();
            bit = 0;
            clocks = 0;
        }
        int value = bit == 0 ? 0 : (bit == 9 ? 1 : (current >> (bit - 1)) & 1);
        if (++clocks == kClksPerBit) {
            clocks = 0;
            bit = bit == 9 ? -1 : bit + 1;
        }
        return value;
    }
};

// Decodes the core's uart_tx line.
struct LineReceiver {
    int bit = -1;
    int clocks = 0;
    uint8_t value = 0;

    // returns a byte (0..255) when one completes, else -1
    int sample(int level) {
        if (bit < 0) {
            if (level == 0) {          // start bit: sample every bit in its middle
                bit = 0;
                clocks = 0;
            }
            return -1;
        }
        if (++clocks == (bit == 0 ? kClksPerBit / 2 : kClksPerBit)) {
            clocks = 0;
            if (bit == 0) {
                if (level != 0) bit = -1;   // glitch
                else bit = 1;
                return -1;
            }
            if (bit <= 8) {
                value = static_cast<uint8_t>((value >> 1) | (level << 7));
                ++bit;
                return -1;
            }
            bit = -1;                   // stop bit
            return level ? value : -1;
        }
        return -1;
    }
};

bool write_all(int fd, const std::string& data) {
    size_t done = 0;
    while (done < data.size()) {
        ssize_t n = write(fd, data.data() + done, data.size() - done);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                pollfd p{fd, POLLOUT, 0};
                poll(&p, 1, 100);
                continue;
            }
            return false;
        }
        done += static_cast<size_t>(n);
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    auto context = std::make_unique<VerilatedContext>();
    context->commandArgs(argc, argv);
    bool use_pty = false;
    for (int k = 1; k < argc; ++k)
        if (std::string(argv[k]) == "--pty") use_pty = true;

    int in_fd = 0, out_fd = 1;
    if (use_pty) {
        int master = -1, slave = -1;
        char name[256];
        if (openpty(&master, &slave, name, nullptr, nullptr) != 0) {
            std::perror("openpty");
            return 2;
        }
        termios tio;
        tcgetattr(slave, &tio);
        cfmakeraw(&tio);
        tcsetattr(slave, TCSANOW, &tio);
        close(slave);                       // EIO on the master until the host opens the slave
        std::printf("PTY %s\n", name);
        std::fflush(stdout);
        in_fd = out_fd = master;
    }
    fcntl(in_fd, F_SETFL, fcntl(in_fd, F_GETFL) | O_NONBLOCK);

    auto top = std::make_unique<Vnmc_top>(context.get());
    LineDriver driver;
    LineReceiver receiver;
    std::string outgoing;
    bool eof = false, seen_host = false;
    uint64_t cycles = 0, quiet_cycles = 0;
    top->clk = 0;
    top->rst = 1;
    top->uart_rx = 1;
    for (int k = 0; k < 8; ++k) {
        top->clk = !top->clk;
        top->eval();
    }
    top->rst = 0;
    for (int k = 0; k < 64; ++k) {          // let the power-on reset finish before the line moves
        top->clk = 1;
        top->eval();
        top->clk = 0;
        top->eval();
    }

    while (!context->gotFinish()) {
        // input: only when the line is free; block when nothing at all is happening
        if (!driver.busy() && !eof && (cycles % 64 == 0 || top->idle)) {
            if (top->idle && outgoing.empty() && receiver.bit < 0 && quiet_cycles > 64 * kClksPerBit) {
                pollfd p{in_fd, POLLIN, 0};
                poll(&p, 1, use_pty && !seen_host ? 10 : 1000);
            }
            uint8_t buffer[4096];
            ssize_t n = read(in_fd, buffer, sizeof buffer);
            if (n > 0) {
                seen_host = true;
                driver.pending.insert(driver.pending.end(), buffer, buffer + n);
            } else if (n == 0) {
                eof = true;
            } else if (errno == EIO) {          // pty: no host has the slave open
                if (seen_host) eof = true;
                else usleep(1000);
            }
        }
        bool quiet = !driver.busy() && top->idle && receiver.bit < 0;
        quiet_cycles = quiet ? quiet_cycles + 1 : 0;
        if (eof && outgoing.empty() && quiet_cycles > 64 * kClksPerBit) break;   // the last byte has been answered

        top->uart_rx = driver.level();
        top->clk = 1;
        top->eval();
        top->clk = 0;
        top->eval();
        ++cycles;
        int byte = receiver.sample(top->uart_tx);
        if (byte >= 0) outgoing.push_back(static_cast<char>(byte));
        if (!outgoing.empty() && (top->idle || outgoing.size() >= 256 || cycles % 4096 == 0)) {
            if (!write_all(out_fd, outgoing)) break;
            outgoing.clear();
        }
    }
    if (!outgoing.empty()) write_all(out_fd, outgoing);
    top->final();
    std::fprintf(stderr, "cycles %llu\n", static_cast<unsigned long long>(cycles));
    return 0;
}
