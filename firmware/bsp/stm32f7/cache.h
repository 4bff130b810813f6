/* The Cortex-M7 L1 instruction and data caches. */
#ifndef STM32F7_CACHE_H
#define STM32F7_CACHE_H

/* Invalidates both caches (their contents are random after reset) and turns them on. */
void cache_enable(void);

#endif
