/*
 * gntcmd: the synchronous command protocol of the ERIKA port, guest side.
 *
 * The guest grants dom0 one page with the fixed grant reference 2 and
 * offers it an event channel (EVTCHNOP_alloc_unbound), whose port it
 * publishes in XenStore (port_path=, default ~/data/cmd-port; the ERIKA
 * guest uses /local/erika_task_evtchn).  Dom0 maps the page, binds the
 * port, and then for each command fills in the page, bumps `seq` last and
 * notifies; the guest answers in the same page, sets `done` = seq last and
 * notifies back.  One command is in flight at a time.
 *
 * A second page is granted read-only as ref 3 (dom0 may read it, and
 * must be refused a writable mapping).  CMD_STOP ends the session: the
 * guest answers, dom0 unmaps both pages and notifies once more, and the
 * guest checks that the hypervisor dropped the in-use flags by revoking
 * both grants.
 *
 * Bootargs: [port_path=P] [quiet=1: no line per command, for timing]
 *
 * Page layout (little-endian u32 words):
 *   0 seq     dom0: command number, written last
 *   4 cmd     CMD_*
 *   8 arg0   12 arg1
 *  16 done    guest: seq of the answered command, written last
 *  20 status  0 or a negative errno
 *  24 result
 *  32 text    NUL-terminated text in (UPPER) and out
 */
#include "guest.h"

#define CMD_REF             2
#define RO_REF              3

enum {
    CMD_PING = 1,       /* result = commands answered so far */
    CMD_ADD = 2,        /* result = arg0 + arg1 */
    CMD_UPPER = 3,      /* text upper-cased in place, result = its length */
    CMD_STATS = 4,      /* result = event-channel upcalls taken; text = a summary */
    CMD_STOP = 5,       /* answer, then wait for dom0 to unmap and revoke */
};

struct cmd_page {
    volatile uint32_t seq;
    volatile uint32_t cmd;
    volatile uint32_t arg[2];
    volatile uint32_t done;
    volatile int32_t status;
    volatile uint32_t result;
    uint32_t pad;
    char text[XEN_PAGE_SIZE - 32];
};
_Static_assert(sizeof(struct cmd_page) == XEN_PAGE_SIZE, "one page");

static struct cmd_page page __attribute__((aligned(XEN_PAGE_SIZE)));
static char ro_page[XEN_PAGE_SIZE] __attribute__((aligned(XEN_PAGE_SIZE)));
static volatile uint32_t notifications;
static evtchn_port_t port;
static uint32_t answered;
static bool quiet;

static void on_cmd(evtchn_port_t p, void *arg)
{
    (void)p;
    (void)arg;
    notifications++;
}

static void check(const char *what, int rc)
{
    if (rc < 0)
        test_failure("%s returned %d", what, rc);
}

static const char *cmd_name(uint32_t cmd)
{
    static const char *const names[] = { "?", "PING", "ADD", "UPPER", "STATS", "STOP" };

    return cmd < ARRAY_SIZE(names) ? names[cmd] : "?";
}

/* Execute the command in the page; returns false after CMD_STOP. */
static bool serve(uint32_t seq)
{
    uint32_t cmd = page.cmd, a = page.arg[0], b = page.arg[1], result = 0;
    int32_t status = 0;
    size_t n;

    switch (cmd) {
    case CMD_PING:
        result = answered;
        break;
    case CMD_ADD:
        result = a + b;
        break;
    case CMD_UPPER:
        n = strnlen(page.text, sizeof(page.text) - 1);
        page.text[n] = '\0';
        for (size_t i = 0; i < n; i++)
            if (page.text[i] >= 'a' && page.text[i] <= 'z')
                page.text[i] = (char)(page.text[i] - 'a' + 'A');
        result = (uint32_t)n;
        break;
    case CMD_STATS:
        result = evtchn_upcalls(0);
        snprintf(page.text, sizeof(page.text), "answered %u, notifications %u, upcalls %u",
                 answered, notifications, result);
        break;
    case CMD_STOP:
        break;
    default:
        status = -XEN_ENOSYS;
        break;
    }
    answered++;
    page.status = status;
    page.result = result;
    dmb();                              /* the answer before the word that says it is there */
    page.done = seq;
    dsb();
    check("EVTCHNOP_send", evtchn_send(port));
    if (!quiet)
        printk("gntcmd: #%u %s(%u, %u) -> status %d, result %u\n", seq, cmd_name(cmd), a, b,
               status, result);
    return cmd != CMD_STOP;
}

int main(void)
{
    char port_path[64];
    uint32_t seen = 0, last = 0;
    int rc;

    platform_init();
    check("evtchn_init", evtchn_init());
    check("xenbus_init", xenbus_init());
    check("gnttab_init", gnttab_init());
    if (!bootarg_str("port_path", port_path, sizeof(port_path)))
        strncpy(port_path, "data/cmd-port", sizeof(port_path));
    quiet = bootarg_int("quiet", 0) != 0;

    snprintf(ro_page, sizeof(ro_page), "read-only page of domain %u", xenbus_domid());
    check("grant ref 2", gnttab_grant_access(CMD_REF, 0, virt_to_gfn(&page), false));
    check("grant ref 3", gnttab_grant_access(RO_REF, 0, virt_to_gfn(ro_page), true));
    rc = evtchn_alloc_unbound(0);
    check("EVTCHNOP_alloc_unbound", rc);
    port = (evtchn_port_t)rc;
    check("evtchn_bind", evtchn_bind(port, on_cmd, NULL));
    /* Publish last: dom0 may act as soon as it sees the port. */
    check("publish the port", xenbus_printf(XBT_NIL, port_path, "%u", port));
    printk("gntcmd: page 0x%x granted to dom0 as ref %u (ref %u read-only); port %u at %s\n",
           virt_to_gfn(&page), CMD_REF, RO_REF, port, port_path);

    for (;;) {
        uint32_t seq;

        wait_event(notifications != seen);
        seen = notifications;
        dmb();
        seq = page.seq;
        if (seq == last)
            continue;                   /* a notification without a new command */
        last = seq;
        if (!serve(seq))
            break;
    }

    /* Dom0 unmaps, then notifies: both grants must be free of mappings. */
    wait_event(notifications != seen);
    printk("gntcmd: dom0 is done; ref %u flags 0x%x, ref %u flags 0x%x\n", CMD_REF,
           gnttab_flags(CMD_REF), RO_REF, gnttab_flags(RO_REF));
    check("end access ref 2", gnttab_end_access(CMD_REF));
    check("end access ref 3", gnttab_end_access(RO_REF));
    printk("gntcmd: answered %u commands; grants revoked\n", answered);
    test_success();
}
