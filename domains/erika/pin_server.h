/* The dom0 command server (pin_server.c): the ERIKA Xen demo's protocol. */
#ifndef PIN_SERVER_H
#define PIN_SERVER_H

#include "ee.h"

/* Grant the page, offer dom0 a port and publish it; `task` is activated
 * per command and must call pin_server_serve().  0 or a negative errno
 * (printed: the kernel goes on without the server). */
int pin_server_start(TaskType task);
/* Serve the command in the page; prints it with its service time (upcall
 * to notify-back, guest time). */
void pin_server_serve(void);

#endif /* PIN_SERVER_H */
