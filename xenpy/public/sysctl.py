"""xen/include/public/sysctl.h: host-wide control operations."""

XEN_SYSCTL_INTERFACE_VERSION = 0x0A   # Xen 4.4

XEN_SYSCTL_readconsole = 1
XEN_SYSCTL_tbuf_op = 2
XEN_SYSCTL_physinfo = 3
XEN_SYSCTL_sched_id = 4
XEN_SYSCTL_getdomaininfolist = 6
XEN_SYSCTL_debug_keys = 7
XEN_SYSCTL_getcpuinfo = 8
XEN_SYSCTL_cpupool_op = 18
XEN_SYSCTL_scheduler_op = 19

# Scheduler ids (domctl.h, XEN_DOMCTL_scheduler_op)
XEN_SCHEDULER_CREDIT = 5
XEN_SCHEDULER_CREDIT2 = 6
XEN_SCHEDULER_ARINC653 = 7
XEN_SCHEDULER_RTDS = 8
XEN_SCHEDULER_NULL = 9

# XEN_SYSCTL_cpupool_op: struct xen_sysctl_cpupool_op {op, cpupool_id, sched_id, domid, cpu,
# n_dom, cpumap}
XEN_SYSCTL_CPUPOOL_OP_CREATE = 1
XEN_SYSCTL_CPUPOOL_OP_DESTROY = 2
XEN_SYSCTL_CPUPOOL_OP_INFO = 3
XEN_SYSCTL_CPUPOOL_OP_ADDCPU = 4
XEN_SYSCTL_CPUPOOL_OP_RMCPU = 5
XEN_SYSCTL_CPUPOOL_OP_MOVEDOMAIN = 6
XEN_SYSCTL_CPUPOOL_OP_FREEINFO = 7
XEN_SYSCTL_CPUPOOL_PAR_ANY = 0xFFFFFFFF

# XEN_SYSCTL_scheduler_op: {cpupool_id, sched_id, cmd, u.sched_credit2 {ratelimit_us}}
XEN_SYSCTL_SCHEDOP_putinfo = 0
XEN_SYSCTL_SCHEDOP_getinfo = 1
XEN_SYSCTL_SCHED_RATELIMIT_MAX = 500000
XEN_SYSCTL_SCHED_RATELIMIT_MIN = 100

# XEN_SYSCTL_tbuf_op commands
XEN_SYSCTL_TBUFOP_get_info = 0
XEN_SYSCTL_TBUFOP_set_cpu_mask = 1
XEN_SYSCTL_TBUFOP_set_evt_mask = 2
XEN_SYSCTL_TBUFOP_set_size = 3
XEN_SYSCTL_TBUFOP_enable = 4
XEN_SYSCTL_TBUFOP_disable = 5
