/* Architectural (ARMv7-M) registers shared by every Cortex-M4 and Cortex-M7 board. */
#ifndef CORTEX_M_H
#define CORTEX_M_H

#include <stdint.h>

#define REG32(addr) (*(volatile uint32_t *)(addr))

#define SCB_CPUID REG32(0xE000ED00u)
#define SCB_ICSR REG32(0xE000ED04u)
#define SCB_VTOR REG32(0xE000ED08u)
#define SCB_AIRCR REG32(0xE000ED0Cu)
#define SCB_SHCSR REG32(0xE000ED24u)
#define SCB_CFSR REG32(0xE000ED28u)
#define SCB_HFSR REG32(0xE000ED2Cu)
#define SCB_MMFAR REG32(0xE000ED34u)
#define SCB_BFAR REG32(0xE000ED38u)
#define SCB_CPACR REG32(0xE000ED88u)
#define SCB_CCR REG32(0xE000ED14u)

#define SHCSR_MEMFAULTENA (1u << 16)
#define SHCSR_BUSFAULTENA (1u << 17)
#define SHCSR_USGFAULTENA (1u << 18)

#define CFSR_MMARVALID (1u << 7)
#define CFSR_MSTKERR (1u << 4)
#define CFSR_BFARVALID (1u << 15)
#define CFSR_STKERR (1u << 12)

#define SYST_CSR REG32(0xE000E010u)
#define SYST_RVR REG32(0xE000E014u)
#define SYST_CVR REG32(0xE000E018u)

#define MPU_TYPE REG32(0xE000ED90u)
#define MPU_CTRL REG32(0xE000ED94u)
#define MPU_RNR REG32(0xE000ED98u)
#define MPU_RBAR REG32(0xE000ED9Cu)
#define MPU_RASR REG32(0xE000EDA0u)

/* Code that must run while the flash cannot be read (an erase or program stalls every fetch
 * from it for up to seconds): the erase/program routines, and the receive interrupt path
 * with the vector table they reach it through. sections.ld places .ramfunc in CODE_RAM (the
 * board's executable RAM: ITCM on the STM32F7, else the RAM) and Reset_Handler copies it
 * there. long_call: RAM is beyond a BL's reach from flash. */
#define RAMFUNC __attribute__((section(".ramfunc"), noinline, long_call))

static inline void cm_dsb(void) {
    __asm volatile("dsb 0xF" ::: "memory");
}
static inline void cm_isb(void) {
    __asm volatile("isb 0xF" ::: "memory");
}
static inline void cm_disable_irq(void) {
    __asm volatile("cpsid i" ::: "memory");
}
static inline void cm_enable_irq(void) {
    __asm volatile("cpsie i" ::: "memory");
}
/* BASEPRI: interrupts of this priority value and below (numerically higher) wait. */
static inline uint32_t cm_get_basepri(void) {
    uint32_t v;
    __asm volatile("mrs %0, basepri" : "=r"(v));
    return v;
}
static inline void cm_set_basepri(uint32_t v) {
    __asm volatile("msr basepri, %0" ::"r"(v) : "memory");
}

/* Shared Cortex-M setup, called from Reset_Handler before main(). */
void cm_mpu_init(void);

#endif
