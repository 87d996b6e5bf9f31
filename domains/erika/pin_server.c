/*
 * The dom0 command server of the ERIKA v2 Xen port's demo, wire for wire,
 * so that dom0's pin_state driver works with this kernel and with the
 * original RTOS alike.
 *
 * At start: grant dom0 one page as grant reference 2, allocate an unbound
 * event channel for domain 0 and publish its port, in decimal, at
 * /local/erika_task_evtchn (dom0 must have run `xenstore-chmod -r /local b`
 * for a domU to create that key).
 *
 * Per command: dom0 fills in pin_number and pin_value and notifies that
 * port.  The handler (ISR level) activates the server task, which drives
 * PD<pin_number> as an output to pin_value, stores return_value (0, or a
 * negative errno for a pin the A20 lacks), and notifies dom0 back the way
 * the demo does: bind an interdomain channel to the dom0 port published at
 * /local/linux_erika_evtchn, send, close.
 */
#include "pin_server.h"

#include "gpio.h"

#define CMD_REF             2
#define TASK_PORT_KEY       "/local/erika_task_evtchn"
#define DOM0_PORT_KEY       "/local/linux_erika_evtchn"

/* The page dom0 maps: three little-endian int32s, then nothing. */
struct pin_cmd {
    volatile int32_t pin_number;
    volatile int32_t pin_value;
    volatile int32_t return_value;
};

static union {
    struct pin_cmd cmd;
    char bytes[XEN_PAGE_SIZE];
} shared __attribute__((aligned(XEN_PAGE_SIZE)));

static TaskType server_task;
static evtchn_port_t port;
static uint64_t notified_at;            /* CNTVCT at the upcall of the command being served */

static void on_command(evtchn_port_t p, void *arg)
{
    (void)p;
    (void)arg;
    notified_at = irq_entry_count();
    ActivateTask(server_task);
}

static int step(const char *what, int rc)
{
    if (rc < 0)
        printk("pin server: %s: %s (%d)\n", what, xenbus_errname(rc), rc);
    return rc;
}

int pin_server_start(TaskType task)
{
    int rc;

    server_task = task;
    if (step("xenbus_init", xenbus_init()) < 0 || step("gnttab_init", gnttab_init()) < 0)
        return -XEN_ENODEV;
    rc = step("grant ref 2", gnttab_grant_access(CMD_REF, 0, virt_to_gfn(&shared), false));
    if (rc < 0)
        return rc;
    rc = step("EVTCHNOP_alloc_unbound", evtchn_alloc_unbound(0));
    if (rc < 0)
        return rc;
    port = (evtchn_port_t)rc;
    if ((rc = step("attach", os_evtchn_attach(port, on_command, NULL))) < 0)
        return rc;
    /* Publish last: dom0 may send a command as soon as it reads the key. */
    rc = xenbus_printf(XBT_NIL, TASK_PORT_KEY, "%u", port);
    if (rc < 0) {
        printk("pin server: cannot write %s: %s%s\n", TASK_PORT_KEY, xenbus_errname(rc),
               rc == -XEN_EACCES ? " (dom0 must run `xenstore-chmod -r /local b` first)" : "");
        os_evtchn_detach(port);
        evtchn_close(port);
        return rc;
    }
    printk("pin server: page 0x%x granted to dom0 as ref %u, port %u at %s\n",
           virt_to_gfn(&shared), CMD_REF, port, TASK_PORT_KEY);
    return 0;
}

/* The demo's notify-back: a channel to dom0's port just for this send. */
static int notify_dom0(long *dom0_port)
{
    int local, rc;

    if ((rc = xenbus_read_int(XBT_NIL, DOM0_PORT_KEY, dom0_port)) < 0)
        return rc;
    if (*dom0_port <= 0 || *dom0_port >= EVTCHN_2L_NR_CHANNELS)
        return -XEN_EINVAL;
    local = evtchn_bind_interdomain(0, (evtchn_port_t)*dom0_port);
    if (local < 0)
        return local;
    rc = evtchn_send((evtchn_port_t)local);
    evtchn_close((evtchn_port_t)local);
    return rc;
}

void pin_server_serve(void)
{
    int32_t n = shared.cmd.pin_number, value = shared.cmd.pin_value;
    int pin = gpio_pin('D', n);
    int rc = pin < 0 ? pin : gpio_output(pin, value);
    uint32_t us;
    long dom0_port = 0;
    int sent;
    char what[48];

    shared.cmd.return_value = rc;
    dsb();                              /* the answer before the notification */
    sent = notify_dom0(&dom0_port);
    us = (uint32_t)udiv64(timer_ticks_to_ns(timer_count() - notified_at), 1000, NULL);
    if (rc == 0)
        snprintf(what, sizeof(what), "PD%d -> %s, return 0", n, value ? "high" : "low");
    else
        snprintf(what, sizeof(what), "PD%d refused: return %d", n, rc);
    if (sent < 0)
        printk("pin server: %s, dom0 not notified (%s: %s)\n", what, DOM0_PORT_KEY,
               xenbus_errname(sent));
    else
        printk("pin server: %s, dom0 port %ld notified in %u us\n", what, dom0_port, us);
}
