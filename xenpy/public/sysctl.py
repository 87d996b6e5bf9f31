"""xen/include/public/sysctl.h: host-wide control operations."""

XEN_SYSCTL_INTERFACE_VERSION = 0x0A   # Xen 4.4

XEN_SYSCTL_readconsole = 1
XEN_SYSCTL_physinfo = 3
XEN_SYSCTL_sched_id = 4
XEN_SYSCTL_getdomaininfolist = 6
XEN_SYSCTL_debug_keys = 7
XEN_SYSCTL_getcpuinfo = 8

XEN_SCHEDULER_CREDIT = 5
