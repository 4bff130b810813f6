/* The firmware's main loop: poll the serial link, answer requests. */
#include <stdint.h>

#include "bsp.h"
#include "commands.h"
#include "link.h"
#include "log.h"
#include "model.h"
#include "persist_cmd.h"
#include "protocol.h"

#ifndef LINK_MAX_PAYLOAD
#error "LINK_MAX_PAYLOAD comes from boards/<board>.toml ([link] max_payload)"
#endif
#define LINK_MAX_REPLY 1024

static uint8_t rx_buf[LINK_MAX_PAYLOAD];
static uint8_t reply_buf[LINK_MAX_REPLY];
static link_t link;

static void uart_write(void *ctx, const uint8_t *data, size_t n) {
    (void)ctx;
    bsp_uart_write(data, n);
}

static void fault_to_link(const uint8_t *payload, uint16_t len) {
    link_send_unsolicited(&link, MSG_FAULT, payload, len);
}

int main(void) {
    link_init(&link, rx_buf, sizeof rx_buf, reply_buf, sizeof reply_buf, uart_write, 0,
              commands_handle, &link);
    log_attach(&link);
    bsp_set_fault_sink(fault_to_link);
    log_info("boot: board %s, build %s, protocol v%u", BOARD_NAME, BUILD_ID,
             (unsigned)LINK_PROTOCOL_VERSION);
    static char line[120];
    bsp_describe_chip(line, sizeof line);
    log_info("%s", line); /* which chip answered: id, flash size, unique id */
    bsp_describe_clock(line, sizeof line);
    log_info("%s", line);
    const char *problem = bsp_bringup_problem();
    if (problem) log_warn("bring-up: %s", problem); /* e.g. no HSE: running on the HSI */
    model_init();
    persist_boot(); /* the trained state saved before the last reset, if any */
    for (;;) {
        int c = bsp_uart_getc();
        if (c >= 0) {
            link_rx_byte(&link, (uint8_t)c, bsp_uptime_ms());
        } else {
            link_poll(&link, bsp_uptime_ms()); /* drops a frame whose sender went silent */
            bsp_idle();
        }
    }
}
