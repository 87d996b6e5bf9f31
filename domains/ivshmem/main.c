/*
 * ivshmem: two domUs share one page and exchange counters with doorbells,
 * in the manner of Jailhouse's ivshmem-demo, on Xen's primitives: the page
 * is a grant, the doorbell an interdomain event channel, and the two meet
 * in a XenStore directory dom0 prepared for them (the "device" of the
 * pair; Jailhouse's cell configs play that part):
 *
 *   xenstore-write /local/ivshmem ""; xenstore-chmod /local/ivshmem b0
 *
 * Peer 1 writes its domid to DIR/1/domid.  Peer 0 watches for it, grants
 * its page to peer 1 (ref 8), offers it a port, and publishes DIR/0/ref
 * and DIR/0/port.  Peer 1 watches for those, maps the grant over a frame
 * of its own RAM (GNTTABOP_map_grant_ref), binds the port and says READY
 * in its row of the page.  Then for round r = 1..N peer 0 sets its counter
 * to r and rings; peer 1 answers each doorbell by raising its counter to
 * peer 0's and ringing back.  Each row of the page is written by its peer
 * alone; both peers print the whole table, so each shows what it read
 * from the other through the shared page.  At the end peer 1 says DONE,
 * unmaps and rings; peer 0 revokes the grant (which fails while mapped).
 *
 * Bootargs: id=0|1 [rounds=N, default 10] [dir=PATH, default /local/ivshmem]
 */
#include "guest.h"

#define SHM_REF         8

enum { ST_ABSENT, ST_INIT, ST_READY, ST_DONE };

struct row {
    volatile uint32_t domid;
    volatile uint32_t state;
    volatile uint32_t counter;          /* doorbells rung */
    volatile uint32_t irqs;             /* doorbell interrupts taken */
};

struct shmem {
    struct row row[2];
};

static char own_page[XEN_PAGE_SIZE] __attribute__((aligned(XEN_PAGE_SIZE)));
/* Peer 1 maps the grant here: a frame of its own RAM, hidden while mapped. */
static char window[XEN_PAGE_SIZE] __attribute__((aligned(XEN_PAGE_SIZE)));
static struct shmem *shm;
static unsigned int me;
static evtchn_port_t port;
static volatile uint32_t bells;
static char dir[48];

static void on_doorbell(evtchn_port_t p, void *arg)
{
    (void)p;
    (void)arg;
    bells++;
    if (shm)
        shm->row[me].irqs++;
}

static void check(const char *what, int rc)
{
    if (rc < 0)
        test_failure("%s returned %d (%s)", what, rc, xenbus_errname(rc));
}

static void ring_doorbell(void)
{
    dsb();                              /* the row before the interrupt that says to look */
    check("EVTCHNOP_send", evtchn_send(port));
}

static const char *state_name(uint32_t s)
{
    static const char *const names[] = { "ABSENT", "INIT", "READY", "DONE" };

    return s < ARRAY_SIZE(names) ? names[s] : "?";
}

static void print_table(const char *when)
{
    printk("ivshmem[%u]: --- %s ---\n", me, when);
    printk("ivshmem[%u]: peer domid state  counter irqs\n", me);
    for (unsigned int i = 0; i < 2; i++) {
        struct row *r = &shm->row[i];

        printk("ivshmem[%u]: %4u %5u %-6s %7u %4u%s\n", me, i, r->domid, state_name(r->state),
               r->counter, r->irqs, i == me ? "  (me)" : "");
    }
}

static void path_of(char *buf, size_t size, unsigned int id, const char *key)
{
    snprintf(buf, size, "%s/%u/%s", dir, id, key);
}

/* Watch DIR/id/key until it holds an integer; returns it. */
static long await_int(unsigned int id, const char *key)
{
    char path[80], wpath[80], tok[16];
    long v;
    int rc;

    path_of(path, sizeof(path), id, key);
    check("watch", xenbus_watch(path, "ivshmem"));
    while ((rc = xenbus_read_int(XBT_NIL, path, &v)) == -XEN_ENOENT)
        check("read watch", xenbus_read_watch(wpath, sizeof(wpath), tok, sizeof(tok)));
    check("read", rc);
    check("unwatch", xenbus_unwatch(path, "ivshmem"));
    return v;
}

static void publish(const char *key, unsigned long v)
{
    char path[80];

    path_of(path, sizeof(path), me, key);
    check("publish", xenbus_printf(XBT_NIL, path, "%lu", v));
}

static void peer0(uint32_t rounds)
{
    domid_t peer = (domid_t)await_int(1, "domid");
    struct row *mine, *theirs;
    int rc;

    shm = (struct shmem *)own_page;
    mine = &shm->row[0];
    theirs = &shm->row[1];
    mine->domid = xenbus_domid();
    mine->state = ST_INIT;
    check("grant", gnttab_grant_access(SHM_REF, peer, virt_to_gfn(own_page), false));
    rc = evtchn_alloc_unbound(peer);
    check("EVTCHNOP_alloc_unbound", rc);
    port = (evtchn_port_t)rc;
    check("evtchn_bind", evtchn_bind(port, on_doorbell, NULL));
    publish("ref", SHM_REF);
    publish("port", port);
    printk("ivshmem[0]: page granted to domain %u as ref %u, doorbell port %u\n", peer, SHM_REF,
           port);

    wait_event(theirs->state == ST_READY);
    mine->state = ST_READY;
    print_table("peer 1 mapped the page");
    for (uint32_t r = 1; r <= rounds; r++) {
        mine->counter = r;
        ring_doorbell();
        wait_event(theirs->counter >= r);
        if (r == (rounds + 1) / 2)
            print_table("half way");
    }
    mine->state = ST_DONE;
    ring_doorbell();

    /* Peer 1 says DONE, unmaps, then rings: until then the grant is busy. */
    wait_event(theirs->state == ST_DONE);
    for (;;) {
        uint32_t seen = bells;

        rc = gnttab_end_access(SHM_REF);
        if (rc != -XEN_EBUSY)
            break;
        wait_event(bells != seen);
    }
    check("end access", rc);
    print_table("final");
    printk("ivshmem[0]: %u rounds; peer 1 unmapped, grant revoked\n", rounds);
}

static void peer1(uint32_t rounds)
{
    long rport = await_int(0, "port"), ref, domid;
    domid_t peer;
    char path[80];
    grant_handle_t handle;
    uint32_t gpa = virt_to_gfn(window) << XEN_PAGE_SHIFT;
    struct row *mine, *theirs;
    int rc;

    /* Peer 0 publishes its port last: the rest is there now. */
    path_of(path, sizeof(path), 0, "domid");
    check("read domid", xenbus_read_int(XBT_NIL, path, &domid));
    path_of(path, sizeof(path), 0, "ref");
    check("read ref", xenbus_read_int(XBT_NIL, path, &ref));
    peer = (domid_t)domid;
    rc = gnttab_map(peer, (grant_ref_t)ref, gpa, false, &handle);
    if (rc != GNTST_okay)
        test_failure("GNTTABOP_map_grant_ref(dom %u, ref %ld) status %d", peer, ref, rc);
    rc = evtchn_bind_interdomain(peer, (evtchn_port_t)rport);
    check("EVTCHNOP_bind_interdomain", rc);
    port = (evtchn_port_t)rc;
    evtchn_clear(port);                 /* Xen raises a fresh binding once: not a doorbell */
    shm = (struct shmem *)window;
    mine = &shm->row[1];
    theirs = &shm->row[0];
    check("evtchn_bind", evtchn_bind(port, on_doorbell, NULL));
    printk("ivshmem[1]: mapped ref %ld of domain %u at 0x%x (own RAM), doorbell port %u\n", ref,
           peer, gpa, port);

    mine->domid = xenbus_domid();
    mine->state = ST_READY;
    ring_doorbell();
    for (uint32_t r = 1; r <= rounds; r++) {
        wait_event(theirs->counter >= r);
        mine->counter = r;
        ring_doorbell();
        if (r == (rounds + 1) / 2)
            print_table("half way");
    }
    wait_event(theirs->state == ST_DONE);
    mine->state = ST_DONE;
    print_table("final");
    shm = NULL;                         /* the handler must not touch the page from here */
    dsb();
    rc = gnttab_unmap(gpa, handle);
    if (rc != GNTST_okay)
        test_failure("GNTTABOP_unmap_grant_ref status %d", rc);
    for (unsigned int i = 0; i < sizeof(struct shmem); i++)
        if (((volatile char *)window)[i])
            test_failure("after the unmap the frame still shows the shared page");
    printk("ivshmem[1]: unmapped; frame 0x%x is our own RAM again\n", gpa >> XEN_PAGE_SHIFT);
    ring_doorbell();
    printk("ivshmem[1]: %u rounds done\n", rounds);
}

int main(void)
{
    long id, rounds;

    platform_init();
    check("evtchn_init", evtchn_init());
    check("xenbus_init", xenbus_init());
    check("gnttab_init", gnttab_init());
    id = bootarg_int("id", -1);
    rounds = bootarg_int("rounds", 10);
    if (id != 0 && id != 1)
        test_failure("bootargs need id=0 or id=1");
    if (rounds < 1)
        test_failure("rounds=%ld must be positive", rounds);
    if (!bootarg_str("dir", dir, sizeof(dir)))
        strncpy(dir, "/local/ivshmem", sizeof(dir));
    me = (unsigned int)id;

    publish("domid", xenbus_domid());
    printk("ivshmem[%u]: domain %u, meeting in %s\n", me, xenbus_domid(), dir);
    if (me == 0)
        peer0((uint32_t)rounds);
    else
        peer1((uint32_t)rounds);
    test_success();
}
