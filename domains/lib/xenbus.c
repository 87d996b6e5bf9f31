/*
 * XenBus: the guest's XenStore client over its store ring page.
 *
 * The toolstack gives a domU one page (HVM_PARAM_STORE_PFN) shared with
 * xenstored and an event channel to it (HVM_PARAM_STORE_EVTCHN).  The page
 * holds two 1 KiB byte rings: requests the guest produces, replies and
 * watch events xenstored produces.  Indexes are free-running 32-bit byte
 * counts, masked to index the ring; each side writes the data before it
 * moves its producer index and notifies the other through the port.  A
 * message is a struct xsd_sockmsg followed by `len` payload bytes, and may
 * wrap around the ring or be larger than it (up to 4 KiB), so both copies
 * go in chunks and wait for room or data.
 *
 * Waiting sleeps in WFI with the store port bound to a handler: the
 * upcall is what ends the sleep, and the ring indexes are looked at again
 * with interrupts masked before the next WFI, so no notification is lost.
 * The calls are synchronous (one request in flight) and for the main
 * context only, as in Mini-OS: the reply buffer and request ids are not
 * shared with interrupt handlers.
 */
#include "guest.h"

#define WATCH_QUEUE_LEN     8
#define WATCH_EVENT_MAX     512

static volatile struct xenstore_domain_interface *intf;
static evtchn_port_t store_port;
static uint32_t next_req_id = 1;
static volatile uint32_t store_upcalls;
static uint32_t answered;
static domid_t self_domid;

/* The payload of the last reply, NUL-terminated for convenience. */
static char reply[XENSTORE_PAYLOAD_MAX + 1];

/* Watch events that arrived while a reply was awaited (or before anyone
 * asked): "path\0token\0" each.  If the queue is full the oldest is lost,
 * which a watcher notices only as a missed change, as with a slow client
 * on Xen; the queue is sized for the guests here. */
static struct {
    uint32_t len;
    char data[WATCH_EVENT_MAX];
} watch_queue[WATCH_QUEUE_LEN];
static unsigned int wq_head, wq_count;
static uint32_t watch_dropped;

static const char *const xsd_errors[] = {
    "EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC", "EIO",
    "ENOTEMPTY", "ENOSYS", "EROFS", "EBUSY", "EAGAIN", "EISCONN", "E2BIG", "EPERM",
};
static const int xsd_errnos[] = {
    XEN_EINVAL, XEN_EACCES, XEN_EEXIST, XEN_EISDIR, XEN_ENOENT, XEN_ENOMEM, XEN_ENOSPC, XEN_EIO,
    XEN_ENOTEMPTY, XEN_ENOSYS, XEN_EROFS, XEN_EBUSY, XEN_EAGAIN, XEN_EISCONN, XEN_E2BIG, XEN_EPERM,
};

const char *xenbus_errname(int err)
{
    for (unsigned int i = 0; i < ARRAY_SIZE(xsd_errnos); i++)
        if (-err == xsd_errnos[i])
            return xsd_errors[i];
    return "E?";
}

/* libxenstore's rule: a name it does not know is EINVAL. */
static int errno_of_name(const char *name)
{
    for (unsigned int i = 0; i < ARRAY_SIZE(xsd_errors); i++)
        if (!strcmp(name, xsd_errors[i]))
            return -xsd_errnos[i];
    return -XEN_EINVAL;
}

static void on_store_event(evtchn_port_t port, void *arg)
{
    (void)port;
    (void)arg;
    store_upcalls++;
}

uint32_t xenbus_requests(void) { return answered; }
uint32_t xenbus_upcalls(void) { return store_upcalls; }
domid_t xenbus_domid(void) { return self_domid; }

/* ---- the rings ----------------------------------------------------------- */

static bool req_has_room(void)
{
    return intf->req_prod - intf->req_cons < XENSTORE_RING_SIZE;
}

static bool rsp_has_data(void)
{
    return intf->rsp_prod != intf->rsp_cons;
}

static int ring_write(const void *data, size_t len)
{
    const char *p = data;

    while (len) {
        uint32_t cons, prod, room, chunk;

        wait_event(req_has_room());
        cons = intf->req_cons;
        prod = intf->req_prod;
        dmb();                          /* indexes before the ring bytes */
        if (prod - cons > XENSTORE_RING_SIZE)
            return -XEN_EIO;            /* xenstored moved our consumer past us */
        room = XENSTORE_RING_SIZE - (prod - cons);
        chunk = XENSTORE_RING_SIZE - MASK_XENSTORE_IDX(prod);
        chunk = chunk < room ? chunk : room;
        chunk = chunk < len ? chunk : (uint32_t)len;
        memcpy((char *)intf->req + MASK_XENSTORE_IDX(prod), p, chunk);
        dmb();                          /* the bytes before the index that publishes them */
        intf->req_prod = prod + chunk;
        p += chunk;
        len -= chunk;
        /* A message longer than the free space: xenstored must start
         * consuming before the rest fits. */
        if (len)
            evtchn_send(store_port);
    }
    return 0;
}

static int ring_read(void *data, size_t len)
{
    char *p = data;

    while (len) {
        uint32_t cons, prod, chunk;

        wait_event(rsp_has_data());
        cons = intf->rsp_cons;
        prod = intf->rsp_prod;
        dmb();
        if (prod - cons > XENSTORE_RING_SIZE)
            return -XEN_EIO;
        chunk = XENSTORE_RING_SIZE - MASK_XENSTORE_IDX(cons);
        chunk = chunk < prod - cons ? chunk : prod - cons;
        chunk = chunk < len ? chunk : (uint32_t)len;
        memcpy(p, (const char *)intf->rsp + MASK_XENSTORE_IDX(cons), chunk);
        dmb();                          /* done with the bytes before freeing them */
        intf->rsp_cons = cons + chunk;
        dsb();
        /* xenstored only waits for room when the ring was full. */
        if (intf->rsp_prod - cons >= XENSTORE_RING_SIZE)
            evtchn_send(store_port);
        p += chunk;
        len -= chunk;
    }
    return 0;
}

/* Take one message off the response ring: a watch event is queued, a
 * reply left in `reply`.  Returns the header's type, or a negative errno. */
static int read_message(struct xsd_sockmsg *hdr)
{
    int rc = ring_read(hdr, sizeof(*hdr));

    if (rc < 0)
        return rc;
    if (hdr->len > XENSTORE_PAYLOAD_MAX)
        return -XEN_EIO;                /* not something xenstored sends */
    rc = ring_read(reply, hdr->len);
    if (rc < 0)
        return rc;
    reply[hdr->len] = '\0';
    if (hdr->type == XS_WATCH_EVENT) {
        unsigned int slot;

        if (hdr->len > WATCH_EVENT_MAX) {
            watch_dropped++;
            return (int)hdr->type;
        }
        if (wq_count == WATCH_QUEUE_LEN) {
            wq_head = (wq_head + 1) % WATCH_QUEUE_LEN;
            wq_count--;
            watch_dropped++;
        }
        slot = (wq_head + wq_count) % WATCH_QUEUE_LEN;
        memcpy(watch_queue[slot].data, reply, hdr->len);
        watch_queue[slot].len = hdr->len;
        wq_count++;
    }
    return (int)hdr->type;
}

struct part {
    const void *p;
    size_t len;
};

/* One request of `n` payload parts; returns the reply's payload length or
 * a negative errno (an XS_ERROR reply becomes the errno it names). */
static int talk(uint32_t type, xenbus_transaction_t t, const struct part *parts, unsigned int n)
{
    struct xsd_sockmsg hdr = { .type = type, .req_id = next_req_id++, .tx_id = t };
    int rc;

    if (!intf)
        return -XEN_ENODEV;
    for (unsigned int i = 0; i < n; i++)
        hdr.len += parts[i].len;
    if (hdr.len > XENSTORE_PAYLOAD_MAX)
        return -XEN_E2BIG;
    rc = ring_write(&hdr, sizeof(hdr));
    for (unsigned int i = 0; rc == 0 && i < n; i++)
        rc = ring_write(parts[i].p, parts[i].len);
    if (rc < 0)
        return rc;
    evtchn_send(store_port);

    for (;;) {
        struct xsd_sockmsg r;

        rc = read_message(&r);
        if (rc < 0)
            return rc;
        if (r.type == XS_WATCH_EVENT || r.req_id != hdr.req_id)
            continue;                   /* an event, or a reply nobody waits for */
        answered++;
        if (r.type == XS_ERROR)
            return errno_of_name(reply);
        if (r.type != type)
            return -XEN_EIO;
        return (int)r.len;
    }
}

static int talk_path(uint32_t type, xenbus_transaction_t t, const char *path)
{
    struct part p = { path, strlen(path) + 1 };

    return talk(type, t, &p, 1);
}

/* ---- the calls ------------------------------------------------------------ */

int xenbus_read(xenbus_transaction_t t, const char *path, char *buf, size_t size)
{
    int len = talk_path(XS_READ, t, path);

    if (len < 0)
        return len;
    if ((size_t)len + 1 > size)
        return -XEN_E2BIG;
    memcpy(buf, reply, (size_t)len + 1);
    return len;
}

int xenbus_read_int(xenbus_transaction_t t, const char *path, long *value)
{
    char buf[24];
    long v = 0;
    int len = xenbus_read(t, path, buf, sizeof(buf)), i = 0;
    bool neg = false;

    if (len < 0)
        return len;
    if (buf[0] == '-') {
        neg = true;
        i = 1;
    }
    if (i == len)
        return -XEN_EINVAL;
    for (; i < len; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            return -XEN_EINVAL;
        v = v * 10 + (buf[i] - '0');
    }
    *value = neg ? -v : v;
    return 0;
}

int xenbus_write(xenbus_transaction_t t, const char *path, const char *value)
{
    struct part p[2] = { { path, strlen(path) + 1 }, { value, strlen(value) } };
    int rc = talk(XS_WRITE, t, p, 2);

    return rc < 0 ? rc : 0;
}

int xenbus_printf(xenbus_transaction_t t, const char *path, const char *fmt, ...)
{
    char value[128];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(value, sizeof(value), fmt, ap);
    va_end(ap);
    return xenbus_write(t, path, value);
}

int xenbus_mkdir(xenbus_transaction_t t, const char *path)
{
    int rc = talk_path(XS_MKDIR, t, path);

    return rc < 0 ? rc : 0;
}

int xenbus_rm(xenbus_transaction_t t, const char *path)
{
    int rc = talk_path(XS_RM, t, path);

    return rc < 0 ? rc : 0;
}

int xenbus_directory(xenbus_transaction_t t, const char *path, char *buf, size_t size)
{
    int len = talk_path(XS_DIRECTORY, t, path), n = 0;

    if (len < 0)
        return len;
    if ((size_t)len > size)
        return -XEN_E2BIG;
    memcpy(buf, reply, (size_t)len);
    for (int i = 0; i < len; i++)
        n += buf[i] == '\0';
    return n;
}

int xenbus_set_perms(xenbus_transaction_t t, const char *path, const char *const *perms,
                     unsigned int n)
{
    struct part p[1 + 8];
    int rc;

    if (n == 0 || n > 8)
        return -XEN_EINVAL;
    p[0] = (struct part){ path, strlen(path) + 1 };
    for (unsigned int i = 0; i < n; i++)
        p[1 + i] = (struct part){ perms[i], strlen(perms[i]) + 1 };
    rc = talk(XS_SET_PERMS, t, p, 1 + n);
    return rc < 0 ? rc : 0;
}

int xenbus_get_domain_path(domid_t domid, char *buf, size_t size)
{
    char id[8];
    int len;

    snprintf(id, sizeof(id), "%u", domid);
    len = talk_path(XS_GET_DOMAIN_PATH, XBT_NIL, id);
    if (len < 0)
        return len;
    if ((size_t)len > size || len == 0)
        return -XEN_E2BIG;
    memcpy(buf, reply, (size_t)len);
    buf[len - 1] = '\0';                /* the reply carries its own NUL */
    return len - 1;
}

static int watch_op(uint32_t type, const char *path, const char *token)
{
    struct part p[2] = { { path, strlen(path) + 1 }, { token, strlen(token) + 1 } };
    int rc = talk(type, XBT_NIL, p, 2);

    return rc < 0 ? rc : 0;
}

int xenbus_watch(const char *path, const char *token)
{
    return watch_op(XS_WATCH, path, token);
}

int xenbus_unwatch(const char *path, const char *token)
{
    return watch_op(XS_UNWATCH, path, token);
}

bool xenbus_watch_pending(void)
{
    return wq_count > 0 || (intf && rsp_has_data());
}

int xenbus_read_watch(char *path, size_t psize, char *token, size_t tsize)
{
    const char *ev, *tok;
    size_t plen, tlen;
    uint32_t len;

    while (wq_count == 0) {
        struct xsd_sockmsg r;
        int rc = read_message(&r);

        if (rc < 0)
            return rc;
    }
    ev = watch_queue[wq_head].data;
    len = watch_queue[wq_head].len;
    wq_head = (wq_head + 1) % WATCH_QUEUE_LEN;
    wq_count--;

    plen = strnlen(ev, len);
    if (plen + 1 >= len)
        return -XEN_EIO;                /* no token after the path */
    tok = ev + plen + 1;
    tlen = strnlen(tok, len - plen - 1);
    if (plen + 1 > psize || tlen + 1 > tsize)
        return -XEN_E2BIG;
    memcpy(path, ev, plen);
    path[plen] = '\0';
    memcpy(token, tok, tlen);
    token[tlen] = '\0';
    return 0;
}

int xenbus_transaction_start(xenbus_transaction_t *t)
{
    struct part p = { "", 1 };
    int len = talk(XS_TRANSACTION_START, XBT_NIL, &p, 1);
    uint32_t id = 0;

    if (len < 0)
        return len;
    for (int i = 0; i < len && reply[i]; i++) {
        if (reply[i] < '0' || reply[i] > '9')
            return -XEN_EIO;
        id = id * 10 + (uint32_t)(reply[i] - '0');
    }
    *t = id;
    return 0;
}

int xenbus_transaction_end(xenbus_transaction_t t, bool abort)
{
    struct part p = { abort ? "F" : "T", 2 };
    int rc = talk(XS_TRANSACTION_END, t, &p, 1);

    return rc < 0 ? rc : 0;
}

/* ---- setup ------------------------------------------------------------------ */

static int hvm_get(uint32_t index, uint64_t *value)
{
    struct xen_hvm_param p = { .domid = DOMID_SELF, .index = index };
    int rc = HYPERVISOR_hvm_op(HVMOP_get_param, &p);

    if (rc == 0)
        *value = p.value;
    return rc;
}

int xenbus_init(void)
{
    uint64_t pfn, port;
    long id;
    int rc;

    if ((rc = hvm_get(HVM_PARAM_STORE_PFN, &pfn)) < 0 ||
        (rc = hvm_get(HVM_PARAM_STORE_EVTCHN, &port)) < 0)
        return rc;
    if (pfn == 0 || pfn >= (1ULL << (32 - XEN_PAGE_SHIFT)) || port == 0)
        return -XEN_ENODEV;             /* no store (dom0less without one, say) */
    /* The page lies after RAM in the 4.4 layout: map it like RAM. */
    mmu_identity_map((uint32_t)pfn << XEN_PAGE_SHIFT, XEN_PAGE_SIZE, MMU_NORMAL);
    intf = (volatile struct xenstore_domain_interface *)((uintptr_t)pfn << XEN_PAGE_SHIFT);
    store_port = (evtchn_port_t)port;
    /* The toolstack made this port, so the runtime has not yet recorded
     * which vCPU it notifies (its upcall would skip it): say vCPU 0, to
     * Xen and to the runtime at once. */
    rc = evtchn_bind_vcpu(store_port, 0);
    if (rc == 0)
        rc = evtchn_bind(store_port, on_store_event, NULL);
    if (rc < 0) {
        intf = NULL;
        return rc;
    }
    if ((rc = xenbus_read_int(XBT_NIL, "domid", &id)) < 0)
        return rc;
    self_domid = (domid_t)id;
    return 0;
}
