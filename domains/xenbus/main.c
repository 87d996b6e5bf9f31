/*
 * xenbus: a domU's XenStore client at work over its store ring.
 *
 *   1. asks xenstored for its home (XS_GET_DOMAIN_PATH) and checks it
 *      against ~/domid, lists the home;
 *   2. writes ~/data/greeting, reads it back, lists ~/data;
 *   3. watches ~/data/from-dom0 and waits until dom0 writes it
 *      (`xenstore-write /local/domain/N/data/from-dom0 VALUE`);
 *   4. reads ~/data/counter inside a transaction, says so in
 *      ~/data/tx-state, and waits (watching the counter) until dom0 changes
 *      it; the commit must then fail with EAGAIN, and the retry commits
 *      counter + 1;
 *   5. with outside=ok|eacces, writes /local/xenbus-test/<domid>, outside
 *      its home: allowed after `xenstore-chmod -r /local b`, EACCES without;
 *   6. with control=1, announces PV control (control/feature-poweroff and
 *      -reboot) after SUCCESS and waits for `xl shutdown` / `xl reboot` to
 *      write control/shutdown, then shuts itself down with that reason.
 *
 * Bootargs: [dom0=0: skip steps 3 and 4, which need dom0's help] [control=1: step 6]
 *           [outside=ok|eacces: run step 5 expecting that outcome]
 *           [bench=N: then time N of each request kind over the ring]
 */
#include "guest.h"

#define TOKEN_CMD   "from-dom0"
#define TOKEN_CTR   "counter"

static char home[64];

static void check(const char *what, int rc)
{
    if (rc < 0)
        test_failure("%s: %s (%d)", what, xenbus_errname(rc), rc);
}

/* Wait for an event of watch `token`; returns the path that fired. */
static const char *wait_watch(const char *token)
{
    static char path[128];
    char tok[32];

    for (;;) {
        check("read watch", xenbus_read_watch(path, sizeof(path), tok, sizeof(tok)));
        if (!strcmp(tok, token))
            return path;
    }
}

static void step_home(void)
{
    char buf[256], *p;
    long domid;
    int n;

    check("XS_GET_DOMAIN_PATH", xenbus_get_domain_path(xenbus_domid(), home, sizeof(home)));
    check("read domid", xenbus_read_int(XBT_NIL, "domid", &domid));
    printk("xenbus: domain path %s, domid %ld\n", home, domid);
    snprintf(buf, sizeof(buf), "/local/domain/%ld", domid);
    if (strcmp(buf, home))
        test_failure("home %s but domid %ld", home, domid);

    n = xenbus_directory(XBT_NIL, home, buf, sizeof(buf));
    check("directory ~", n);
    printk("xenbus: %s has %d entries:", home, n);
    for (p = buf; n--; p += strlen(p) + 1)
        printk(" %s", p);
    printk("\n");
}

static void step_data(void)
{
    char buf[64];
    int n;

    check("write ~/data/greeting", xenbus_write(XBT_NIL, "data/greeting", "hello from a domU"));
    n = xenbus_read(XBT_NIL, "data/greeting", buf, sizeof(buf));
    check("read ~/data/greeting", n);
    if (strcmp(buf, "hello from a domU"))
        test_failure("read back \"%s\"", buf);
    printk("xenbus: wrote and read back data/greeting = \"%s\" (%d bytes)\n", buf, n);
    n = xenbus_read(XBT_NIL, "data/absent", buf, sizeof(buf));
    if (n != -XEN_ENOENT)
        test_failure("read of a missing node returned %d, not ENOENT", n);
    n = xenbus_directory(XBT_NIL, "data", buf, sizeof(buf));
    check("directory ~/data", n);
    printk("xenbus: data/ lists %d entry: %s\n", n, buf);
}

static void step_watch(void)
{
    char value[64];
    const char *path;
    int n;

    check("watch", xenbus_watch("data/from-dom0", TOKEN_CMD));
    /* xenstored fires a new watch once at once: that one carries no news. */
    path = wait_watch(TOKEN_CMD);
    printk("xenbus: watch set on %s (first event %s)\n", "data/from-dom0", path);
    check("write ~/data/ready", xenbus_write(XBT_NIL, "data/ready", "watch"));
    printk("xenbus: waiting for dom0: xenstore-write %s/data/from-dom0 VALUE\n", home);
    for (;;) {
        path = wait_watch(TOKEN_CMD);
        n = xenbus_read(XBT_NIL, "data/from-dom0", value, sizeof(value));
        if (n >= 0)
            break;
        if (n != -XEN_ENOENT)
            check("read ~/data/from-dom0", n);
    }
    printk("xenbus: watch event %s: dom0 wrote \"%s\"\n", path, value);
    check("unwatch", xenbus_unwatch("data/from-dom0", TOKEN_CMD));
}

static void step_transaction(void)
{
    xenbus_transaction_t t;
    long before = 0, seen;
    int rc, attempt;

    check("write ~/data/counter", xenbus_write(XBT_NIL, "data/counter", "1"));
    check("watch counter", xenbus_watch("data/counter", TOKEN_CTR));
    wait_watch(TOKEN_CTR);
    for (attempt = 1;; attempt++) {
        check("transaction start", xenbus_transaction_start(&t));
        check("read counter in transaction", xenbus_read_int(t, "data/counter", &seen));
        if (attempt == 1) {
            before = seen;
            /* Outside the transaction: tell dom0 to change the counter, and
             * wait until it has (its write fires the counter watch). */
            check("write ~/data/tx-state", xenbus_write(XBT_NIL, "data/tx-state", "in-transaction"));
            printk("xenbus: transaction %u read counter = %ld; waiting for dom0 to change it\n",
                   t, seen);
            wait_watch(TOKEN_CTR);
        }
        check("write counter in transaction", xenbus_printf(t, "data/counter", "%ld", seen + 1));
        rc = xenbus_transaction_end(t, false);
        if (rc == -XEN_EAGAIN) {
            printk("xenbus: commit of transaction %u: EAGAIN (dom0 changed the counter), retrying\n",
                   t);
            if (attempt > 5)
                test_failure("still EAGAIN after %d attempts", attempt);
            continue;
        }
        check("transaction end", rc);
        break;
    }
    if (attempt == 1)
        test_failure("the transaction committed although dom0 changed the counter");
    check("read counter", xenbus_read_int(XBT_NIL, "data/counter", &seen));
    printk("xenbus: committed on attempt %d: counter %ld -> (dom0) -> %ld\n", attempt, before, seen);
    check("unwatch counter", xenbus_unwatch("data/counter", TOKEN_CTR));
    check("write ~/data/tx-state", xenbus_write(XBT_NIL, "data/tx-state", "done"));
}

static void step_outside(const char *expect)
{
    char path[48], buf[48];
    int rc;

    snprintf(path, sizeof(path), "/local/xenbus-test/%u", xenbus_domid());
    rc = xenbus_write(XBT_NIL, path, "written by a domU");
    if (!strcmp(expect, "ok")) {
        check("write outside home", rc);
        check("read back outside home", xenbus_read(XBT_NIL, path, buf, sizeof(buf)));
        printk("xenbus: wrote %s = \"%s\" outside the home\n", path, buf);
    } else if (!strcmp(expect, "eacces")) {
        if (rc != -XEN_EACCES)
            test_failure("write %s returned %d, not EACCES", path, rc);
        printk("xenbus: write %s refused: %s\n", path, xenbus_errname(rc));
    } else {
        test_failure("outside=%s: expected ok or eacces", expect);
    }
}

static uint32_t elapsed_us(uint64_t t0)
{
    return (uint32_t)udiv64(timer_ticks_to_ns(timer_count() - t0), 1000, NULL);
}

/* Operations per second over the ring, for bench/xenstore.py: each line
 * "xenbus-bench: OP N in T us". */
static void bench(uint32_t n)
{
    char buf[256];
    xenbus_transaction_t t;
    uint32_t upcalls = xenbus_upcalls();
    uint64_t t0;

    check("bench setup", xenbus_write(XBT_NIL, "data/bench", "0"));
    t0 = timer_count();
    for (uint32_t i = 0; i < n; i++)
        check("bench read", xenbus_read(XBT_NIL, "data/bench", buf, sizeof(buf)));
    printk("xenbus-bench: read %u in %u us\n", n, elapsed_us(t0));
    t0 = timer_count();
    for (uint32_t i = 0; i < n; i++)
        check("bench write", xenbus_printf(XBT_NIL, "data/bench", "%u", i));
    printk("xenbus-bench: write %u in %u us\n", n, elapsed_us(t0));
    t0 = timer_count();
    for (uint32_t i = 0; i < n; i++)
        check("bench directory", xenbus_directory(XBT_NIL, home, buf, sizeof(buf)));
    printk("xenbus-bench: directory %u in %u us\n", n, elapsed_us(t0));
    /* A transaction: start, read, write, commit (four requests). */
    t0 = timer_count();
    for (uint32_t i = 0; i < n; i++) {
        check("bench transaction start", xenbus_transaction_start(&t));
        check("bench transaction read", xenbus_read(t, "data/bench", buf, sizeof(buf)));
        check("bench transaction write", xenbus_printf(t, "data/bench", "%u", i));
        check("bench transaction end", xenbus_transaction_end(t, false));
    }
    printk("xenbus-bench: transaction %u in %u us\n", n, elapsed_us(t0));
    printk("xenbus-bench: %u store upcalls for %u requests\n", xenbus_upcalls() - upcalls,
           7 * n);
}

/* Step 6: a clean shutdown on the toolstack's request, as Linux's xenbus driver does it. */
static __noreturn void serve_control(void)
{
    char req[32];

    check("feature-poweroff", xenbus_write(XBT_NIL, "control/feature-poweroff", "1"));
    check("feature-reboot", xenbus_write(XBT_NIL, "control/feature-reboot", "1"));
    check("watch control/shutdown", xenbus_watch("control/shutdown", "control"));
    printk("xenbus: watching control/shutdown\n");
    for (;;) {
        wait_watch("control");
        if (xenbus_read(XBT_NIL, "control/shutdown", req, sizeof(req)) <= 0 || !req[0])
            continue;                   /* the watch's first event, or our own acknowledgement */
        check("acknowledge", xenbus_write(XBT_NIL, "control/shutdown", ""));
        printk("xenbus: control/shutdown = %s: shutting down\n", req);
        guest_shutdown(strcmp(req, "reboot") ? SHUTDOWN_poweroff : SHUTDOWN_reboot);
    }
}

int main(void)
{
    char outside[8];

    platform_init();
    test_check("evtchn_init", evtchn_init());
    test_check("xenbus_init", xenbus_init());

    step_home();
    step_data();
    if (bootarg_int("dom0", 1)) {
        step_watch();
        step_transaction();
    }
    if (bootarg_str("outside", outside, sizeof(outside)))
        step_outside(outside);

    if (bootarg_int("bench", 0) > 0)
        bench((uint32_t)bootarg_int("bench", 0));
    if (bootarg_int("control", 0)) {
        printk("Test result: SUCCESS\n");
        serve_control();
    }
    test_success();
}
