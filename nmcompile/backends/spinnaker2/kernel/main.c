/* The SpiNNaker 2 PE program under QEMU semihosting: `kernel.elf IMAGE INPUT OUTPUT RECORD [PROFILE]`.
 *
 * IMAGE is read into the PE data region and validated (exit 2 with a one-line message on a bad image). INPUT is a
 * stream of tick records [n][n keys] (0xFFFFFFFF: new sample, 0xFFFFFFFE: end); for every tick the kernel writes
 * [m][m fired neurons][readout voltages][u, v if RECORD is 1] to OUTPUT and flushes it, so both may be FIFOs.
 * With PROFILE the kernel counts SysTick (run QEMU with -icount shift=0 for instruction counts) per phase and
 * writes the totals there at the end. Exit status: 0 success, 2 bad image, 3 bad arguments or I/O failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snm2.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

#define TICK_NEW_SAMPLE 0xFFFFFFFFu
#define TICK_END 0xFFFFFFFEu
#define KEY_CHUNK 1024u

extern uint8_t __pe_data_start[], __pe_data_end[];

static uint32_t key_buffer[KEY_CHUNK];
static uint32_t out_buffer[1 + 3 * MAX_NEURONS];
static char in_stdio_buffer[1024];
/* newlib-nano's fwrite puts byte by byte: unbuffered, every byte would be one semihosting write. A buffer that
 * holds a whole output record makes it one write per tick (at the fflush). */
static char out_stdio_buffer[4 * (1 + 3 * MAX_NEURONS)];

static void die(int status, const char *what, const char *detail)
{
    fprintf(stderr, "kernel: %s: %s\n", what, detail);
    exit(status);
}

/* read exactly `n` words; 0 at a clean end of file before the first byte, 1 when read, dies if truncated */
static int read_words(FILE *f, uint32_t *dst, uint32_t n, const char *path)
{
    size_t got = fread(dst, 4, n, f);
    if (got == n)
        return 1;
    if (got == 0 && feof(f))
        return 0;
    die(3, path, ferror(f) ? "read error" : "truncated tick record");
    return 0;
}

static void load_image(pe_image_t *img, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(2, path, "cannot open the PE image");
    setvbuf(f, NULL, _IONBF, 0);
    uint32_t capacity = (uint32_t)(__pe_data_end - __pe_data_start);
    size_t size = fread(__pe_data_start, 1, capacity, f);
    uint8_t extra;
    if (size == capacity && fread(&extra, 1, 1, f) == 1)
        die(2, path, "larger than the PE data region (67328 bytes)");
    if (ferror(f))
        die(2, path, "read error");
    fclose(f);
    const char *reason = image_validate(img, __pe_data_start, (uint32_t)size, capacity);
    if (reason)
        die(2, path, reason);
}

static void write_profile(const char *path, const pe_profile_t *prof)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(prof, sizeof *prof, 1, f) != 1 || fclose(f) != 0)
        die(3, path, "cannot write the profile");
}

int main(int argc, char **argv)
{
    if (argc < 5 || argc > 6 || (strcmp(argv[4], "0") && strcmp(argv[4], "1")))
        die(3, "usage", "kernel.elf IMAGE INPUT OUTPUT RECORD(0|1) [PROFILE]");
    const char *image_path = argv[1], *in_path = argv[2], *out_path = argv[3];
    int record = argv[4][0] == '1';
    static pe_image_t img;
    static pe_profile_t profile;
    pe_profile_t *prof = argc == 6 ? &profile : NULL;

    load_image(&img, image_path);
    FILE *in = fopen(in_path, "rb");
    if (!in)
        die(3, in_path, "cannot open INPUT");
    setvbuf(in, in_stdio_buffer, _IOFBF, sizeof in_stdio_buffer);
    FILE *out = fopen(out_path, "wb");
    if (!out)
        die(3, out_path, "cannot open OUTPUT");
    setvbuf(out, out_stdio_buffer, _IOFBF, sizeof out_stdio_buffer);
    if (prof) {
        SYST_RVR = 0xFFFFFFu;
        SYST_CVR = 0;
        SYST_CSR = 5u;     /* enabled, processor clock, no interrupt */
    }

    pe_sample_start(&img);
    for (;;) {
        uint32_t n;
        if (!read_words(in, &n, 1, in_path) || n == TICK_END)
            break;
        if (n == TICK_NEW_SAMPLE) {
            pe_sample_start(&img);
            continue;
        }
        while (n) {
            uint32_t chunk = n < KEY_CHUNK ? n : KEY_CHUNK;
            if (!read_words(in, key_buffer, chunk, in_path))
                die(3, in_path, "truncated tick record");
            pe_receive(&img, key_buffer, chunk, prof);
            n -= chunk;
        }
        uint32_t len = pe_update(&img, out_buffer, record, prof);
        if (fwrite(out_buffer, 4, len, out) != len || fflush(out) != 0)
            die(3, out_path, "write error");
    }
    if (fclose(out) != 0)
        die(3, out_path, "write error");
    fclose(in);
    if (prof)
        write_profile(argv[5], prof);
    return 0;
}
