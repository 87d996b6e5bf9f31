"""xen/include/public/sysctl.h: host-wide control operations."""

XEN_SYSCTL_INTERFACE_VERSION = 0x0A   # Xen 4.4

XEN_SYSCTL_readconsole = 1
XEN_SYSCTL_tbuf_op = 2
XEN_SYSCTL_physinfo = 3
XEN_SYSCTL_sched_id = 4
XEN_SYSCTL_getdomaininfolist = 6
XEN_SYSCTL_debug_keys = 7
XEN_SYSCTL_getcpuinfo = 8

XEN_SCHEDULER_CREDIT = 5

# XEN_SYSCTL_tbuf_op commands
XEN_SYSCTL_TBUFOP_get_info = 0
XEN_SYSCTL_TBUFOP_set_cpu_mask = 1
XEN_SYSCTL_TBUFOP_set_evt_mask = 2
XEN_SYSCTL_TBUFOP_set_size = 3
XEN_SYSCTL_TBUFOP_enable = 4
XEN_SYSCTL_TBUFOP_disable = 5
