/* The dom0 command server (pin_server.c): the ERIKA Xen demo's protocol. */
#ifndef PIN_SERVER_H
#define PIN_SERVER_H

#include "ee.h"

struct pin_server_stats {
    uint32_t commands;                  /* served */
    uint32_t unanswered;                /* dom0 could not be notified back */
    uint32_t last_us, max_us;           /* upcall to notify-back, guest time */
    uint64_t total_us;
};

/* Grant the page, offer dom0 a port and publish it; `task` is activated
 * per command and must call pin_server_serve().  0 or a negative errno
 * (printed: the kernel goes on without the server). */
int pin_server_start(TaskType task);
void pin_server_serve(void);
void pin_server_stats(struct pin_server_stats *s);

#endif /* PIN_SERVER_H */
