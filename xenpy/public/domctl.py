"""xen/include/public/domctl.h: the toolstack's domain-control operations.

The privcmd channel carries a domctl as {cmd, interface_version, domain, u}, where u holds the fields
of the op's union member by their Xen names (see toolstack/xc.py for the caller side).
"""

XEN_DOMCTL_INTERFACE_VERSION = 0x09   # Xen 4.4, the release the ERIKA port targets

XEN_DOMCTL_createdomain = 1
XEN_DOMCTL_destroydomain = 2
XEN_DOMCTL_pausedomain = 3
XEN_DOMCTL_unpausedomain = 4
XEN_DOMCTL_getdomaininfo = 5
XEN_DOMCTL_setvcpuaffinity = 9
XEN_DOMCTL_max_mem = 11
XEN_DOMCTL_setvcpucontext = 12
XEN_DOMCTL_getvcpucontext = 13
XEN_DOMCTL_getvcpuinfo = 14
XEN_DOMCTL_max_vcpus = 15
XEN_DOMCTL_scheduler_op = 16
XEN_DOMCTL_setdomainhandle = 17
XEN_DOMCTL_iomem_permission = 20
XEN_DOMCTL_getvcpuaffinity = 25
XEN_DOMCTL_sendtrigger = 28
XEN_DOMCTL_memory_mapping = 39
XEN_DOMCTL_vuart_op = 81

# XEN_DOMCTL_scheduler_op: {sched_id, cmd, u.credit2 {weight u16, cap u16}}
XEN_DOMCTL_SCHEDOP_putinfo = 0
XEN_DOMCTL_SCHEDOP_getinfo = 1
XEN_DOMCTL_SCHEDOP_putvcpuinfo = 2
XEN_DOMCTL_SCHEDOP_getvcpuinfo = 3

XEN_VCPUAFFINITY_HARD = 1
XEN_VCPUAFFINITY_SOFT = 2
XEN_VCPUAFFINITY_FORCE = 4

DOMINF_dying = 1 << 0
DOMINF_hvm_guest = 1 << 1
DOMINF_shutdown = 1 << 2
DOMINF_paused = 1 << 3
DOMINF_blocked = 1 << 4
DOMINF_running = 1 << 5
DOMINF_debugged = 1 << 6
DOMINF_xs_domain = 1 << 7
DOMINF_hap = 1 << 8
DOMINF_shutdownshift = 16
DOMINF_shutdownmask = 255

XEN_DOMCTL_VUART_OP_INIT = 0
XEN_DOMCTL_VUART_TYPE_VPL011 = 0
GPADDR_BITS = 40          # what getdomaininfo reports: an LPAE stage-2 of 40 bits (Cortex-A7)

XEN_DOMCTL_CDF_hvm = 1 << 0
XEN_DOMCTL_CDF_hap = 1 << 1
XEN_DOMCTL_CDF_xs_domain = 1 << 4

NAMES = {v: k[len("XEN_DOMCTL_"):] for k, v in dict(globals()).items()
         if k.startswith("XEN_DOMCTL_") and k != "XEN_DOMCTL_INTERFACE_VERSION"
         and not k.startswith(("XEN_DOMCTL_CDF", "XEN_DOMCTL_VUART", "XEN_DOMCTL_SCHEDOP"))}
