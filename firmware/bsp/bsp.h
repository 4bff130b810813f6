/* Board support: the only interface between the application and the hardware.
 * Nothing above this header names a register. Each board implements it in
 * bsp/<bsp>/ (selected by boards/<board>.toml); bsp/cortex_m/ holds what every
 * Cortex-M board shares (startup, MPU fence, stack painting, fault reports). */
#ifndef BSP_H
#define BSP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Clocks, caches, the UART, the cost counter and the 1 ms tick. Called once from reset. */
void bsp_init(void);

/* Blocking transmit of n bytes (polled; safe in fault handlers with interrupts off). */
void bsp_uart_write(const uint8_t *data, size_t n);

/* One received byte, or -1 if none is waiting. Never blocks. */
int bsp_uart_getc(void);

/* Raw free-running cost counter in the board's unit (CPU cycles, or instructions on the
 * emulator); 32 bits, wraps. bsp_counter_unit() says which (enum counter_unit). */
uint32_t bsp_counter_raw(void);
uint8_t bsp_counter_unit(void);

/* Called when there is nothing to do; may sleep until the next interrupt. */
void bsp_idle(void);

/* Ends the program: on the emulator, QEMU exits with this code (semihosting); on a real
 * board it halts (there is nobody to return to). */
void bsp_exit(int code) __attribute__((noreturn));

/* Writes text where a person can read it even without the serial link: semihosting
 * stderr on the emulator; nothing on real boards. */
void bsp_debug_write(const char *text);

/* Lines for the boot log (each fits one LOG frame, 120 characters). The chip: which one
 * answered (STM32: DBGMCU IDCODE, flash size and 96-bit unique id from the factory data;
 * emulator: what it emulates). The clock: what runs and from which source. */
size_t bsp_describe_chip(char *buf, size_t n);
size_t bsp_describe_clock(char *buf, size_t n);

/* NULL after a clean bring-up; otherwise what failed and what runs instead (a clock that did
 * not start, and the fallback taken). main() logs it as a warning once the UART runs. */
const char *bsp_bringup_problem(void);

/* --- shared Cortex-M services (bsp/cortex_m) ------------------------------------ */

/* 64-bit extension of bsp_counter_raw(); extended every millisecond by the tick. */
uint64_t bsp_counter_read64(void);

/* Milliseconds since boot from the SysTick interrupt. */
uint32_t bsp_uptime_ms(void);

/* Starts SysTick at 1 kHz from a core clock of hz. */
void bsp_tick_start(uint32_t hz);

/* Deepest use of the thread stack so far, in bytes, from the painted stack. */
uint32_t bsp_stack_high_water(void);
uint32_t bsp_stack_size(void);

/* Memory figures from the linker's own symbols. */
uint32_t bsp_flash_origin(void);
uint32_t bsp_flash_size(void);
uint32_t bsp_flash_used(void);
uint32_t bsp_ram_origin(void);
uint32_t bsp_ram_size(void);
uint32_t bsp_ram_static(void); /* stacks + .data + .bss */

/* Fault reports: bsp/cortex_m calls this sink with an encoded report before halting. */
typedef void (*bsp_fault_sink_fn)(const uint8_t *payload, uint16_t len);
void bsp_set_fault_sink(bsp_fault_sink_fn sink);

/* --- persistence region: trained state that survives a reset ------------------------ */
/* Two slots of non-volatile memory outside the image (app/persist.c decides what goes in
 * them). Addresses and the slot size come from boards/<board>.toml [persist] through the
 * generated memory.ld, which also keeps the image out of them. Real boards: flash sectors
 * (bsp/stm32/flash.c). Emulated boards: their file-backed PSRAM (bsp/mps2/flash.c). */
uint32_t bsp_persist_slot_size(void);
uint32_t bsp_persist_slot_addr(uint32_t slot);
/* Every byte of the slot reads 0xFF afterwards; false if the hardware reported an error. */
bool bsp_persist_erase(uint32_t slot);
/* Programs n bytes (offset and n multiples of 4) of an erased slot; false on an error. */
bool bsp_persist_program(uint32_t slot, uint32_t offset, const uint8_t *data, uint32_t n);

/* Resets the chip (AIRCR.SYSRESETREQ), as the reset button would. */
void bsp_reset(void) __attribute__((noreturn));

#endif
