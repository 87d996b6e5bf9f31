/*
 * Xen-on-ARM guest ABI for the xenpy guests: hypercall numbers, sub-op
 * numbers and the structures passed by pointer.  Values follow Xen's public
 * headers (xen/include/public); layouts are those of an arm32 guest, where
 * every struct uses the AAPCS layout with 8-byte aligned 64-bit fields and
 * guest handles inside structs are 64 bits wide.
 *
 * The hypercall wrappers live in hypercall.S: number in r12, arguments in
 * r0-r4, "hvc #0xEA1", result (a negative errno on error) in r0.
 */
#ifndef XEN_H
#define XEN_H

#define XEN_HYPERCALL_TAG       0xEA1

/* Hypercall numbers (__HYPERVISOR_*) available to ARM guests. */
#define __HYPERVISOR_memory_op          12
#define __HYPERVISOR_multicall          13
#define __HYPERVISOR_xen_version        17
#define __HYPERVISOR_console_io         18
#define __HYPERVISOR_grant_table_op     20
#define __HYPERVISOR_vm_assist          21
#define __HYPERVISOR_vcpu_op            24
#define __HYPERVISOR_sched_op           29
#define __HYPERVISOR_event_channel_op   32
#define __HYPERVISOR_physdev_op         33
#define __HYPERVISOR_hvm_op             34
#define __HYPERVISOR_sysctl             35
#define __HYPERVISOR_domctl             36

/* errno values, returned negated. */
#define XEN_EPERM        1
#define XEN_ENOENT       2
#define XEN_ESRCH        3
#define XEN_EINTR        4
#define XEN_EIO          5
#define XEN_ENXIO        6
#define XEN_E2BIG        7
#define XEN_EBADF        9
#define XEN_EAGAIN      11
#define XEN_ENOMEM      12
#define XEN_EACCES      13
#define XEN_EFAULT      14
#define XEN_EBUSY       16
#define XEN_EEXIST      17
#define XEN_ENODEV      19
#define XEN_EINVAL      22
#define XEN_ENOSPC      28
#define XEN_ENOSYS      38

/* Special domain ids (domid_t is 16 bits). */
#define DOMID_SELF      0x7FF0U
#define DOMID_IO        0x7FF1U
#define DOMID_XEN       0x7FF2U
#define DOMID_INVALID   0x7FF4U
#define DOMID_ANY       0x7FF5U

/* RAM starts here in the Xen 4.4 arm32 guest layout; the toolstack loads a
 * zImage at GUEST_RAM_BASE + 0x8000. */
#define GUEST_RAM_BASE          0x80000000U
#define GUEST_GICD_BASE         0x2C001000U
#define GUEST_GICC_BASE         0x2C002000U
#define GUEST_GNTTAB_BASE       0xB0000000U
#define GUEST_GNTTAB_SIZE       0x00020000U
#define GUEST_TIMER_VIRT_PPI    27
#define GUEST_EVTCHN_PPI        31
#define XEN_PAGE_SHIFT          12
#define XEN_PAGE_SIZE           (1U << XEN_PAGE_SHIFT)

/* console_io */
#define CONSOLEIO_write         0
#define CONSOLEIO_read          1

/* xen_version */
#define XENVER_version          0
#define XENVER_extraversion     1
#define XENVER_compile_info     2
#define XENVER_capabilities     3
#define XENVER_changeset        4
#define XENVER_platform_parameters 5
#define XENVER_get_features     6
#define XENVER_pagesize         7
#define XENVER_guest_handle     8
#define XENVER_commandline      9
#define XENVER_build_id         10

/* XENVER_get_features bits (submap 0) */
#define XENFEAT_writable_page_tables        0
#define XENFEAT_auto_translated_physmap     2
#define XENFEAT_hvm_callback_vector         8
#define XENFEAT_dom0                        11
#define XENFEAT_memory_op_vnode_supported   13
#define XENFEAT_ARM_SMCCC_supported         14
#define XENFEAT_not_direct_mapped           16
#define XENFEAT_direct_mapped               17

/* sched_op */
#define SCHEDOP_yield           0
#define SCHEDOP_block           1
#define SCHEDOP_shutdown        2
#define SCHEDOP_poll            3
#define SCHEDOP_remote_shutdown 4
#define SCHEDOP_shutdown_code   5
#define SCHEDOP_watchdog        6

/* shutdown reasons */
#define SHUTDOWN_poweroff       0
#define SHUTDOWN_reboot         1
#define SHUTDOWN_suspend        2
#define SHUTDOWN_crash          3
#define SHUTDOWN_watchdog       4
#define SHUTDOWN_soft_reset     5

/* vcpu_op: only these two are allowed on ARM */
#define VCPUOP_register_runstate_memory_area 5
#define VCPUOP_register_vcpu_info            10

/* event_channel_op */
#define EVTCHNOP_bind_interdomain   0
#define EVTCHNOP_bind_virq          1
#define EVTCHNOP_bind_pirq          2
#define EVTCHNOP_close              3
#define EVTCHNOP_send               4
#define EVTCHNOP_status             5
#define EVTCHNOP_alloc_unbound      6
#define EVTCHNOP_bind_ipi           7
#define EVTCHNOP_bind_vcpu          8
#define EVTCHNOP_unmask             9
#define EVTCHNOP_reset              10

#define EVTCHNSTAT_closed       0
#define EVTCHNSTAT_unbound      1
#define EVTCHNSTAT_interdomain  2
#define EVTCHNSTAT_pirq         3
#define EVTCHNSTAT_virq         4
#define EVTCHNSTAT_ipi          5

#define VIRQ_TIMER      0
#define VIRQ_DEBUG      1
#define VIRQ_CONSOLE    2
#define NR_VIRQS        24

/* 2-level event channels: xen_ulong_t is 64-bit on ARM, so 4096 ports. */
#define EVTCHN_2L_NR_CHANNELS   4096

/* grant_table_op */
#define GNTTABOP_map_grant_ref      0
#define GNTTABOP_unmap_grant_ref    1
#define GNTTABOP_setup_table        2
#define GNTTABOP_dump_table         3
#define GNTTABOP_transfer           4
#define GNTTABOP_copy               5
#define GNTTABOP_query_size         6
#define GNTTABOP_set_version        8
#define GNTTABOP_get_version        10

#define GTF_invalid             0
#define GTF_permit_access       1
#define GTF_accept_transfer     2
#define GTF_type_mask           3
#define GTF_readonly            (1U << 2)
#define GTF_reading             (1U << 3)
#define GTF_writing             (1U << 4)

#define GNTMAP_device_map       (1U << 0)
#define GNTMAP_host_map         (1U << 1)
#define GNTMAP_readonly         (1U << 2)

#define GNTCOPY_source_gref     (1U << 0)
#define GNTCOPY_dest_gref       (1U << 1)

#define GNTST_okay              0
#define GNTST_general_error     (-1)
#define GNTST_bad_domain        (-2)
#define GNTST_bad_gntref        (-3)
#define GNTST_bad_handle        (-4)
#define GNTST_bad_virt_addr     (-5)
#define GNTST_permission_denied (-8)

#define GNTTAB_NR_RESERVED_ENTRIES  8
#define GNTTAB_RESERVED_CONSOLE     0
#define GNTTAB_RESERVED_XENSTORE    1

/* memory_op */
#define XENMEM_increase_reservation     0
#define XENMEM_decrease_reservation     1
#define XENMEM_maximum_ram_page         2
#define XENMEM_current_reservation      3
#define XENMEM_maximum_reservation      4
#define XENMEM_populate_physmap         6
#define XENMEM_add_to_physmap           7
#define XENMEM_remove_from_physmap      15

#define XENMAPSPACE_shared_info         0
#define XENMAPSPACE_grant_table         1
#define XENMAPSPACE_gmfn                2
#define XENMAPSPACE_gmfn_range          3
#define XENMAPSPACE_gmfn_foreign        4
#define XENMAPSPACE_dev_mmio            5

/* hvm_op: ARM only implements get/set_param */
#define HVMOP_set_param         0
#define HVMOP_get_param         1

#define HVM_PARAM_CALLBACK_IRQ  0
#define HVM_PARAM_STORE_PFN     1
#define HVM_PARAM_STORE_EVTCHN  2
#define HVM_PARAM_CONSOLE_PFN   17
#define HVM_PARAM_CONSOLE_EVTCHN 18

/* PSCI 0.2+ function ids, called with "hvc #0": id in r0, args r1-r3.
 * (No U suffix here or below: head.S uses them and the assembler refuses it.) */
#define PSCI_0_2_FN_PSCI_VERSION        0x84000000
#define PSCI_0_2_FN_CPU_SUSPEND         0x84000001
#define PSCI_0_2_FN_CPU_OFF             0x84000002
#define PSCI_0_2_FN_CPU_ON              0x84000003
#define PSCI_0_2_FN_AFFINITY_INFO       0x84000004
#define PSCI_0_2_FN_MIGRATE_INFO_TYPE   0x84000006
#define PSCI_0_2_FN_SYSTEM_OFF          0x84000008
#define PSCI_0_2_FN_SYSTEM_RESET        0x84000009
#define PSCI_1_0_FN_PSCI_FEATURES       0x8400000A

#define PSCI_SUCCESS                0
#define PSCI_NOT_SUPPORTED          (-1)
#define PSCI_INVALID_PARAMETERS     (-2)
#define PSCI_DENIED                 (-3)
#define PSCI_ALREADY_ON             (-4)
#define PSCI_ON_PENDING             (-5)
#define PSCI_INTERNAL_FAILURE       (-6)
#define PSCI_NOT_PRESENT            (-7)
#define PSCI_DISABLED               (-8)
#define PSCI_INVALID_ADDRESS        (-9)

#define PSCI_AFFINITY_ON            0
#define PSCI_AFFINITY_OFF           1
#define PSCI_AFFINITY_ON_PENDING    2

/* zImage header */
#define ZIMAGE_MAGIC            0x016F2818

#ifndef __ASSEMBLER__
#include <stdint.h>

typedef uint16_t domid_t;
typedef uint32_t evtchn_port_t;
typedef uint32_t grant_ref_t;
typedef uint32_t grant_handle_t;
typedef uint64_t xen_pfn_t;
typedef uint64_t xen_ulong_t;

/*
 * A guest handle inside a struct is 8 bytes on ARM whatever the guest's
 * pointer size: set it with set_xen_guest_handle() so the top half is zero.
 */
#define XEN_GUEST_HANDLE(type) \
    union { type *p; uint64_t q; } __attribute__((aligned(8)))
#define set_xen_guest_handle(h, ptr) \
    do { (h).q = 0; (h).p = (ptr); } while (0)

#define XEN_STATIC_ASSERT_SIZE(t, n) \
    _Static_assert(sizeof(t) == (n), "ABI size of " #t)

/* xen_version */
typedef char xen_extraversion_t[16];
typedef char xen_capabilities_info_t[1024];
typedef char xen_changeset_info_t[64];

struct xen_compile_info {
    char compiler[64];
    char compile_by[16];
    char compile_domain[32];
    char compile_date[32];
};
XEN_STATIC_ASSERT_SIZE(struct xen_compile_info, 144);

struct xen_feature_info {
    uint32_t submap_idx;        /* IN: which 32-bit submap */
    uint32_t submap;            /* OUT */
};
XEN_STATIC_ASSERT_SIZE(struct xen_feature_info, 8);

/* sched_op */
struct sched_shutdown {
    uint32_t reason;            /* SHUTDOWN_* */
};
XEN_STATIC_ASSERT_SIZE(struct sched_shutdown, 4);

struct sched_poll {
    XEN_GUEST_HANDLE(evtchn_port_t) ports;
    uint32_t nr_ports;
    uint64_t timeout;
};
XEN_STATIC_ASSERT_SIZE(struct sched_poll, 24);

struct sched_remote_shutdown {
    domid_t domain_id;
    uint32_t reason;
};
XEN_STATIC_ASSERT_SIZE(struct sched_remote_shutdown, 8);

/* vcpu_op */
struct vcpu_register_vcpu_info {
    uint64_t mfn;               /* a guest frame number on ARM */
    uint32_t offset;            /* within that frame */
    uint32_t rsvd;
};
XEN_STATIC_ASSERT_SIZE(struct vcpu_register_vcpu_info, 16);

/* shared_info / vcpu_info */
struct vcpu_time_info {
    uint32_t version;
    uint32_t pad0;
    uint64_t tsc_timestamp;
    uint64_t system_time;
    uint32_t tsc_to_system_mul;
    int8_t tsc_shift;
    uint8_t flags;
    uint8_t pad1[2];
};
XEN_STATIC_ASSERT_SIZE(struct vcpu_time_info, 32);

struct vcpu_info {
    uint8_t evtchn_upcall_pending;
    uint8_t pad0;               /* ARM has no upcall mask: the GIC masks */
    xen_ulong_t evtchn_pending_sel;
    struct vcpu_time_info time;
};
XEN_STATIC_ASSERT_SIZE(struct vcpu_info, 48);

struct shared_info {
    struct vcpu_info vcpu_info[1];          /* XEN_LEGACY_MAX_VCPUS on ARM */
    xen_ulong_t evtchn_pending[64];
    xen_ulong_t evtchn_mask[64];
    uint32_t wc_version;
    uint32_t wc_sec;
    uint32_t wc_nsec;
    uint32_t wc_sec_hi;
};
XEN_STATIC_ASSERT_SIZE(struct shared_info, 1088);

/* event_channel_op */
struct evtchn_alloc_unbound {
    domid_t dom, remote_dom;    /* IN */
    evtchn_port_t port;         /* OUT */
};
XEN_STATIC_ASSERT_SIZE(struct evtchn_alloc_unbound, 8);

struct evtchn_bind_interdomain {
    domid_t remote_dom;         /* IN */
    evtchn_port_t remote_port;  /* IN */
    evtchn_port_t local_port;   /* OUT */
};
XEN_STATIC_ASSERT_SIZE(struct evtchn_bind_interdomain, 12);

struct evtchn_bind_virq {
    uint32_t virq;              /* IN */
    uint32_t vcpu;              /* IN */
    evtchn_port_t port;         /* OUT */
};
XEN_STATIC_ASSERT_SIZE(struct evtchn_bind_virq, 12);

struct evtchn_bind_ipi {
    uint32_t vcpu;              /* IN */
    evtchn_port_t port;         /* OUT */
};
XEN_STATIC_ASSERT_SIZE(struct evtchn_bind_ipi, 8);

struct evtchn_close { evtchn_port_t port; };
struct evtchn_send { evtchn_port_t port; };
struct evtchn_unmask { evtchn_port_t port; };

struct evtchn_bind_vcpu {
    evtchn_port_t port;
    uint32_t vcpu;
};
XEN_STATIC_ASSERT_SIZE(struct evtchn_bind_vcpu, 8);

struct evtchn_status {
    domid_t dom;                /* IN */
    evtchn_port_t port;         /* IN */
    uint32_t status;            /* OUT: EVTCHNSTAT_* */
    uint32_t vcpu;              /* OUT */
    union {
        struct { domid_t dom; } unbound;
        struct { domid_t dom; evtchn_port_t port; } interdomain;
        uint32_t pirq;
        uint32_t virq;
    } u;
};
XEN_STATIC_ASSERT_SIZE(struct evtchn_status, 24);

/* grant_table_op */
struct grant_entry_v1 {
    uint16_t flags;             /* GTF_* */
    domid_t domid;              /* who may map/access the frame */
    uint32_t frame;             /* granted frame number */
};
XEN_STATIC_ASSERT_SIZE(struct grant_entry_v1, 8);

struct gnttab_map_grant_ref {
    uint64_t host_addr;         /* IN: guest physical address on ARM */
    uint32_t flags;             /* IN: GNTMAP_* */
    grant_ref_t ref;            /* IN */
    domid_t dom;                /* IN */
    int16_t status;             /* OUT: GNTST_* */
    grant_handle_t handle;      /* OUT */
    uint64_t dev_bus_addr;      /* OUT */
};
XEN_STATIC_ASSERT_SIZE(struct gnttab_map_grant_ref, 32);

struct gnttab_unmap_grant_ref {
    uint64_t host_addr;
    uint64_t dev_bus_addr;
    grant_handle_t handle;
    int16_t status;             /* OUT */
};
XEN_STATIC_ASSERT_SIZE(struct gnttab_unmap_grant_ref, 24);

struct gnttab_setup_table {
    domid_t dom;                /* IN */
    uint32_t nr_frames;         /* IN */
    int16_t status;             /* OUT */
    XEN_GUEST_HANDLE(xen_pfn_t) frame_list;  /* OUT */
};
XEN_STATIC_ASSERT_SIZE(struct gnttab_setup_table, 24);

struct gnttab_copy_ptr {
    union {
        grant_ref_t ref;
        xen_pfn_t gmfn;
    } u;
    domid_t domid;
    uint16_t offset;
};

struct gnttab_copy {
    struct gnttab_copy_ptr source, dest;
    uint16_t len;
    uint16_t flags;             /* GNTCOPY_* */
    int16_t status;             /* OUT */
};
XEN_STATIC_ASSERT_SIZE(struct gnttab_copy, 40);

struct gnttab_query_size {
    domid_t dom;                /* IN */
    uint32_t nr_frames;         /* OUT */
    uint32_t max_nr_frames;     /* OUT */
    int16_t status;             /* OUT */
};
XEN_STATIC_ASSERT_SIZE(struct gnttab_query_size, 16);

/* memory_op */
struct xen_add_to_physmap {
    domid_t domid;
    uint16_t size;              /* for XENMAPSPACE_gmfn_range */
    uint32_t space;             /* XENMAPSPACE_* */
    xen_ulong_t idx;
    xen_pfn_t gpfn;
};
XEN_STATIC_ASSERT_SIZE(struct xen_add_to_physmap, 24);

struct xen_remove_from_physmap {
    domid_t domid;
    xen_pfn_t gpfn;
};
XEN_STATIC_ASSERT_SIZE(struct xen_remove_from_physmap, 16);

struct xen_memory_reservation {
    XEN_GUEST_HANDLE(xen_pfn_t) extent_start;
    xen_ulong_t nr_extents;
    uint32_t extent_order;
    uint32_t mem_flags;
    domid_t domid;
};
XEN_STATIC_ASSERT_SIZE(struct xen_memory_reservation, 32);

/* hvm_op */
struct xen_hvm_param {
    domid_t domid;              /* DOMID_SELF for the caller */
    uint32_t index;             /* HVM_PARAM_* */
    uint64_t value;
};
XEN_STATIC_ASSERT_SIZE(struct xen_hvm_param, 16);

/* Console ring shared with xenconsoled (HVM_PARAM_CONSOLE_PFN). */
struct xencons_interface {
    char in[1024];
    char out[2048];
    uint32_t in_cons, in_prod;
    uint32_t out_cons, out_prod;
    uint8_t connection;
};
#define MASK_XENCONS_IDX(idx, ring) ((idx) & (sizeof(ring) - 1))

/* Hypercall wrappers (hypercall.S).  Each returns r0 as the hypervisor
 * left it: >= 0 on success, a negative errno on failure. */
int HYPERVISOR_console_io(int cmd, int count, const char *buf);
int HYPERVISOR_xen_version(int cmd, void *arg);
int HYPERVISOR_sched_op(int cmd, void *arg);
int HYPERVISOR_vcpu_op(int cmd, uint32_t vcpuid, void *arg);
int HYPERVISOR_event_channel_op(int cmd, void *arg);
int HYPERVISOR_grant_table_op(unsigned int cmd, void *uop, unsigned int count);
int HYPERVISOR_memory_op(unsigned int cmd, void *arg);
int HYPERVISOR_hvm_op(int op, void *arg);
int HYPERVISOR_physdev_op(int cmd, void *arg);
int HYPERVISOR_vm_assist(unsigned int cmd, unsigned int type);

/* SMCCC/PSCI call through "hvc #0": function id in r0, arguments r1-r3. */
int psci_call(uint32_t fn, uint32_t a1, uint32_t a2, uint32_t a3);

#endif /* __ASSEMBLER__ */

/* Interrupts of the guest layout beyond the two above (arch-arm.h). */
#define GUEST_TIMER_PHYS_S_PPI  29
#define GUEST_TIMER_PHYS_NS_PPI 30

/* 2-level event channels: port p is bit p % 64 of the 64-bit word p / 64 of
 * evtchn_pending / evtchn_mask, and word w is bit w of evtchn_pending_sel. */
#define BITS_PER_EVTCHN_WORD    64

/* More VIRQs (xen.h). */
#define VIRQ_DOM_EXC    3

/* ---- XenStore (io/xs_wire.h) and more errno values it names ---- */
#define XEN_EISDIR      21
#define XEN_EROFS       30
#define XEN_ENOTEMPTY   39
#define XEN_EISCONN     106

#define XS_CONTROL              0
#define XS_DIRECTORY            1
#define XS_READ                 2
#define XS_GET_PERMS            3
#define XS_WATCH                4
#define XS_UNWATCH              5
#define XS_TRANSACTION_START    6
#define XS_TRANSACTION_END      7
#define XS_INTRODUCE            8
#define XS_RELEASE              9
#define XS_GET_DOMAIN_PATH      10
#define XS_WRITE                11
#define XS_MKDIR                12
#define XS_RM                   13
#define XS_SET_PERMS            14
#define XS_WATCH_EVENT          15
#define XS_ERROR                16

#define XENSTORE_PAYLOAD_MAX    4096
#define XENSTORE_RING_SIZE      1024
#define MASK_XENSTORE_IDX(idx)  ((idx) & (XENSTORE_RING_SIZE - 1))

#ifndef __ASSEMBLER__
struct xsd_sockmsg {
    uint32_t type;              /* XS_* */
    uint32_t req_id;            /* echoed in the reply */
    uint32_t tx_id;             /* 0 outside a transaction */
    uint32_t len;               /* payload bytes that follow */
};
XEN_STATIC_ASSERT_SIZE(struct xsd_sockmsg, 16);

/* The store ring page (HVM_PARAM_STORE_PFN).  Xen 4.4 had exactly these
 * fields; later versions add feature and connection words after them. */
struct xenstore_domain_interface {
    char req[XENSTORE_RING_SIZE];   /* guest -> xenstored */
    char rsp[XENSTORE_RING_SIZE];   /* xenstored -> guest */
    uint32_t req_cons, req_prod;
    uint32_t rsp_cons, rsp_prod;
};
XEN_STATIC_ASSERT_SIZE(struct xenstore_domain_interface, 2064);
#endif /* __ASSEMBLER__ */

#define GNTST_eagain            (-12)
#define GNTST_no_space          (-13)

#endif /* XEN_H */
