"""xen/include/public/xen.h: hypercall numbers and special domain ids."""

HYPERVISOR_set_trap_table = 0
HYPERVISOR_sched_op_compat = 6
HYPERVISOR_platform_op = 7
HYPERVISOR_memory_op = 12
HYPERVISOR_multicall = 13
HYPERVISOR_event_channel_op_compat = 16
HYPERVISOR_xen_version = 17
HYPERVISOR_console_io = 18
HYPERVISOR_physdev_op_compat = 19
HYPERVISOR_grant_table_op = 20
HYPERVISOR_vm_assist = 21
HYPERVISOR_vcpu_op = 24
HYPERVISOR_xsm_op = 27
HYPERVISOR_sched_op = 29
HYPERVISOR_event_channel_op = 32
HYPERVISOR_physdev_op = 33
HYPERVISOR_hvm_op = 34
HYPERVISOR_sysctl = 35
HYPERVISOR_domctl = 36

HYPERCALL_NAMES = {v: k[len("HYPERVISOR_"):] for k, v in dict(globals()).items()
                   if k.startswith("HYPERVISOR_")}

DOMID_FIRST_RESERVED = 0x7FF0
DOMID_SELF = 0x7FF0
DOMID_IO = 0x7FF1
DOMID_XEN = 0x7FF2
DOMID_COW = 0x7FF3
DOMID_INVALID = 0x7FF4
DOMID_ANY = 0x7FF5
DOMID_IDLE = 0x7FFF

CONSOLEIO_write = 0
CONSOLEIO_read = 1

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

# vm_assist (xen.h)
VMASST_CMD_enable = 0
VMASST_CMD_disable = 1
VMASST_TYPE_4gb_segments = 0
VMASST_TYPE_4gb_segments_notify = 1
VMASST_TYPE_writable_pagetables = 2
VMASST_TYPE_pae_extended_cr3 = 3
VMASST_TYPE_architectural_iopl = 4
VMASST_TYPE_runstate_update_flag = 5
VMASST_TYPE_m2p_strict = 32
