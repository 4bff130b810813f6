/* Fault handlers shared by every Cortex-M board: each reports the fault type, the faulting
 * address where the core records one, and the PC over the serial link (a FAULT frame), and
 * on the emulator also on semihosting stderr; then the board halts. */
#include <stdint.h>
#include <string.h>

#include "bsp.h"
#include "cortex_m.h"
#include "fmt.h"
#include "protocol.h"

static bsp_fault_sink_fn fault_sink;

void bsp_set_fault_sink(bsp_fault_sink_fn sink) {
    fault_sink = sink;
}

static const char *fault_name(uint32_t kind) {
    switch (kind) {
        case 3: return "HardFault";
        case 4: return "MemManage fault";
        case 5: return "BusFault";
        case 6: return "UsageFault";
        default: return "fault";
    }
}

static const char *fault_cause(uint32_t cfsr, uint32_t hfsr) {
    if (cfsr & CFSR_MSTKERR) return "stack overflow: exception entry hit the stack guard";
    if (cfsr & (1u << 0)) return "instruction fetch from a no-access region";
    if (cfsr & (1u << 1)) return "data access to a no-access region (past the RAM limit?)";
    if (cfsr & CFSR_STKERR) return "bus error while stacking";
    if (cfsr & (1u << 9)) return "precise data bus error";
    if (cfsr & (1u << 10)) return "imprecise data bus error";
    if (cfsr & (1u << 8)) return "instruction bus error";
    if (cfsr & (1u << 16)) return "undefined instruction";
    if (cfsr & (1u << 17)) return "invalid state (Thumb bit clear)";
    if (cfsr & (1u << 24)) return "unaligned access";
    if (cfsr & (1u << 25)) return "divide by zero";
    if (hfsr & (1u << 30)) return "escalated fault";
    return "unknown cause";
}

/* frame: the stacked r0-r3, r12, lr, pc, xpsr (or NULL if stacking itself failed). */
__attribute__((noreturn, used)) void fault_report(uint32_t *frame, uint32_t kind) {
    uint32_t cfsr = SCB_CFSR, hfsr = SCB_HFSR;
    struct payload_FAULT f;
    memset(&f, 0, sizeof f);
    f.kind = (uint8_t)kind;
    f.cfsr = cfsr;
    f.hfsr = hfsr;
    f.sp = (uint32_t)(uintptr_t)frame;
    if ((cfsr & CFSR_MMARVALID) && !(cfsr & CFSR_MSTKERR)) {
        f.address = SCB_MMFAR;
        f.address_valid = 1;
    } else if (cfsr & CFSR_BFARVALID) {
        f.address = SCB_BFAR;
        f.address_valid = 1;
    } else if (cfsr & CFSR_MSTKERR) {
        f.address = (uint32_t)(uintptr_t)frame; /* the stack pointer that hit the guard */
        f.address_valid = 1;
    }
    if (frame && !(cfsr & (CFSR_MSTKERR | CFSR_STKERR))) {
        f.lr = frame[5];
        f.pc = frame[6];
    }

    uint8_t buf[sizeof f + 160];
    char *text = (char *)buf + sizeof f;
    size_t n =
        fmt_snprintf(text, 160, "%s at 0x%08x: %s (pc 0x%08x, cfsr 0x%08x)", fault_name(kind),
                     (unsigned)f.address, fault_cause(cfsr, hfsr), (unsigned)f.pc, (unsigned)cfsr);
    if (!f.address_valid)
        n = fmt_snprintf(text, 160, "%s, no fault address recorded: %s (pc 0x%08x, cfsr 0x%08x)",
                         fault_name(kind), fault_cause(cfsr, hfsr), (unsigned)f.pc, (unsigned)cfsr);
    memcpy(buf, &f, sizeof f);
    if (fault_sink) fault_sink(buf, (uint16_t)(sizeof f + n));
    bsp_debug_write("FAULT: ");
    bsp_debug_write(text);
    bsp_debug_write("\n");
    bsp_exit(0x80 | (int)kind);
}

/* Picks the stack the exception frame was pushed to (EXC_RETURN bit 2) and reports. */
#define FAULT_ENTRY(name, kind)              \
    __attribute__((naked)) void name(void) { \
        __asm volatile(                      \
            "tst lr, #4\n"                   \
            "ite eq\n"                       \
            "mrseq r0, msp\n"                \
            "mrsne r0, psp\n"                \
            "mov r1, #" #kind                \
            "\n"                             \
            "b fault_report\n");             \
    }

FAULT_ENTRY(HardFault_Handler, 3)
FAULT_ENTRY(MemManage_Handler, 4)
FAULT_ENTRY(BusFault_Handler, 5)
FAULT_ENTRY(UsageFault_Handler, 6)
