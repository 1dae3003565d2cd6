/* cpuidmask: hide x86 ISA extensions from a process by trapping its CPUID instructions.
 *
 * Loaded with LD_PRELOAD and CPUIDMASK_LEVEL=avx2 (hide AVX-512, AVX-VNNI and AMX) or
 * CPUIDMASK_LEVEL=avx512 (hide AMX only). At load it turns on CPUID faulting for the process
 * (arch_prctl(ARCH_SET_CPUID, 0); needs the CPU flag cpuid_fault): every CPUID then raises
 * SIGSEGV. The handler below sees the CPUID opcode (0F A2) at the faulting instruction, turns
 * CPUID back on for this thread, executes it, turns it off again, clears the hidden feature
 * bits of leaf 7 (sub-leaves 0 and 1), writes the registers back and steps over the instruction.
 * XGETBV is left alone: onnxruntime's MLAS needs a feature's CPUID bit and its XCR0 state, so
 * hiding the bit is enough. The setting is inherited by threads and forked children and reset by
 * execve, where LD_PRELOAD loads this library again.
 *
 * It emulates the ISA, not the microarchitecture: caches, clock and memory stay this host's.
 * Build: gcc -O2 -shared -fPIC -o libcpuidmask.so cpuidmask.c
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef ARCH_SET_CPUID
#define ARCH_SET_CPUID 0x1012
#endif

#define BIT(n) (1u << (n))

/* leaf 7.0 EBX: AVX512F, DQ, IFMA, PF, ER, CD, BW, VL */
static const uint32_t L70_EBX_AVX512 = BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31);
/* leaf 7.0 ECX: AVX512_VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ */
static const uint32_t L70_ECX_AVX512 = BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14);
/* leaf 7.0 EDX: AVX512_4VNNIW, 4FMAPS, VP2INTERSECT, AVX512_FP16 */
static const uint32_t L70_EDX_AVX512 = BIT(2) | BIT(3) | BIT(8) | BIT(23);
/* leaf 7.0 EDX: AMX-BF16, AMX-TILE, AMX-INT8 */
static const uint32_t L70_EDX_AMX = BIT(22) | BIT(24) | BIT(25);
/* leaf 7.1 EAX: AVX-VNNI, AVX512_BF16; EDX: AVX-VNNI-INT8, AVX-NE-CONVERT */
static const uint32_t L71_EAX_AVX = BIT(4) | BIT(5);
static const uint32_t L71_EDX_AVX = BIT(4) | BIT(5);

static int level;                        /* 1: avx2, 2: avx512 (no AMX) */
static volatile unsigned long n_trapped; /* CPUIDs answered (read with cpuidmask_trapped) */
static struct sigaction previous;

static long set_cpuid(int enabled) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, enabled); }

unsigned long cpuidmask_trapped(void) { return n_trapped; }
int cpuidmask_level(void) { return level; }

static void mask(uint32_t leaf, uint32_t sub, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d) {
    if (leaf != 7)
        return;
    if (sub == 0) {
        *d &= ~L70_EDX_AMX;
        if (level == 1) {
            *b &= ~L70_EBX_AVX512;
            *c &= ~L70_ECX_AVX512;
            *d &= ~L70_EDX_AVX512;
        }
    } else if (sub == 1 && level == 1) {
        *a &= ~L71_EAX_AVX;
        *d &= ~L71_EDX_AVX;
    }
}

static void on_segv(int sig, siginfo_t *info, void *uc_) {
    ucontext_t *uc = (ucontext_t *)uc_;
    greg_t *r = uc->uc_mcontext.gregs;
    const uint8_t *ip = (const uint8_t *)r[REG_RIP];
    if (ip && ip[0] == 0x0f && ip[1] == 0xa2) {
        uint32_t a = (uint32_t)r[REG_RAX], b = 0, c = (uint32_t)r[REG_RCX], d = 0;
        uint32_t leaf = a, sub = c;
        set_cpuid(1);
        __cpuid_count(leaf, sub, a, b, c, d);
        set_cpuid(0);
        mask(leaf, sub, &a, &b, &c, &d);
        r[REG_RAX] = a; /* CPUID zero-extends its 32-bit results into the 64-bit registers */
        r[REG_RBX] = b;
        r[REG_RCX] = c;
        r[REG_RDX] = d;
        r[REG_RIP] += 2;
        n_trapped++;
        return;
    }
    /* a real fault: hand it to whoever had SIGSEGV before, else die of it as usual */
    if ((previous.sa_flags & SA_SIGINFO) && previous.sa_sigaction) {
        previous.sa_sigaction(sig, info, uc_);
    } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        previous.sa_handler(sig);
    } else {
        signal(SIGSEGV, SIG_DFL); /* returning re-executes the faulting instruction: default action */
    }
}

__attribute__((constructor)) static void cpuidmask_init(void) {
    const char *want = getenv("CPUIDMASK_LEVEL");
    if (!want || !*want)
        return; /* loaded but asked to hide nothing: a control run */
    if (!strcmp(want, "avx2"))
        level = 1;
    else if (!strcmp(want, "avx512"))
        level = 2;
    else {
        fprintf(stderr, "cpuidmask: unknown CPUIDMASK_LEVEL=%s (valid: avx2, avx512)\n", want);
        _exit(97);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &previous) != 0 || set_cpuid(0) != 0) {
        /* a run that believes it is masked while it is not would label native numbers emulated */
        fprintf(stderr, "cpuidmask: cannot enable CPUID faulting: %s (the CPU or hypervisor lacks cpuid_fault)\n",
                strerror(errno));
        _exit(97);
    }
}
