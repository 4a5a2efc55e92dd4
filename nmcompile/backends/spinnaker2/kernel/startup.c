/* Startup of the PE program on a Cortex-M4F (QEMU mps2-an386): vector table, FPU enable, .bss, semihosting
 * console and command line, a heap bounded by the linker script, and fault handlers that end QEMU. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define SYS_WRITE0 0x04
#define SYS_GET_CMDLINE 0x15
#define SYS_EXIT 0x18
#define ADP_STOPPED_RUNTIME_ERROR 0x20023
#define MAX_ARGS 8

extern uint32_t __StackTop[], __bss_start__[], __bss_end__[];
extern char __heap_start[], __heap_end[];
extern void initialise_monitor_handles(void);
extern int main(int argc, char **argv);

static char cmdline[512];
static char *argv_buffer[MAX_ARGS + 1];

static int semihost(int op, void *arg)
{
    register int r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

/* the semihosting command line, split at spaces (QEMU joins its arg= options with single spaces) */
static int parse_cmdline(void)
{
    struct { char *buf; int len; } block = { cmdline, sizeof cmdline - 1 };
    if (semihost(SYS_GET_CMDLINE, &block) != 0)
        return 0;
    cmdline[block.len] = 0;
    int argc = 0;
    for (char *c = cmdline; *c && argc < MAX_ARGS;) {
        while (*c == ' ')
            *c++ = 0;
        if (!*c)
            break;
        argv_buffer[argc++] = c;
        while (*c && *c != ' ')
            c++;
    }
    argv_buffer[argc] = NULL;
    return argc;
}

/* no floating point before the FPU is enabled: this function is the only code that runs first */
__attribute__((noreturn)) void Reset_Handler(void)
{
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;   /* CPACR: CP10 and CP11 full access */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    for (uint32_t *p = __bss_start__; p < __bss_end__; p++)
        *p = 0;
    initialise_monitor_handles();
    int argc = parse_cmdline();
    exit(main(argc, argv_buffer));
}

__attribute__((noreturn)) void Fault_Handler(void)
{
    semihost(SYS_WRITE0, "kernel: CPU fault (hard fault, memory or usage fault)\n");
    for (;;)
        semihost(SYS_EXIT, (void *)ADP_STOPPED_RUNTIME_ERROR);
}

__attribute__((noreturn)) void Default_Handler(void)
{
    semihost(SYS_WRITE0, "kernel: unexpected exception\n");
    for (;;)
        semihost(SYS_EXIT, (void *)ADP_STOPPED_RUNTIME_ERROR);
}

/* the heap (stdio's FILE structures) lives between .bss and the PE data region, never in it */
void *_sbrk(ptrdiff_t increment)
{
    static char *brk = __heap_start;
    if (increment > __heap_end - brk || increment < __heap_start - brk) {
        errno = ENOMEM;
        return (void *)-1;
    }
    char *previous = brk;
    brk += increment;
    return previous;
}

__attribute__((section(".isr_vector"), used)) static void *const vectors[16] = {
    __StackTop, (void *)Reset_Handler, (void *)Default_Handler, (void *)Fault_Handler, (void *)Fault_Handler,
    (void *)Fault_Handler, (void *)Fault_Handler, 0, 0, 0, 0, (void *)Default_Handler, (void *)Default_Handler, 0,
    (void *)Default_Handler, (void *)Default_Handler,
};
