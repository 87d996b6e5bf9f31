/* Between the parts of the kernel; not for applications. */
#ifndef KERNEL_H
#define KERNEL_H

#include "ee.h"

StatusType os_error(const char *service, unsigned int id, StatusType s);
const char *os_task_name(TaskType t);
void os_dispatch(void);
/* Bracket a handler the kernel registers itself (its counter ISR). */
void os_isr_enter(void);
void os_isr_exit(void);
/* The system counter (alarm.c): start it at StartOS, stop it at shutdown. */
void os_counter_init(void);
void os_counter_stop(void);

#endif /* KERNEL_H */
