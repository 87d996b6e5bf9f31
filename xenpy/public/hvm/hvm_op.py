"""xen/include/public/hvm/hvm_op.h."""

import struct

HVMOP_set_param = 0
HVMOP_get_param = 1
HVMOP_set_pci_intx_level = 2
HVMOP_set_isa_irq_level = 3
HVMOP_set_pci_link_route = 4
HVMOP_flush_tlbs = 5
HVMOP_pagetable_dying = 9
HVMOP_get_time = 10
HVMOP_xentrace = 11
HVMOP_set_mem_access = 12
HVMOP_get_mem_access = 13
HVMOP_get_mem_type = 15
HVMOP_set_evtchn_upcall_vector = 23
HVMOP_guest_request_vm_event = 24
HVMOP_altp2m = 25

# struct xen_hvm_param (16 bytes): domid u16 @0; pad u16 @2; index u32 @4; value u64 @8.
XEN_HVM_PARAM = struct.Struct("<H2xIQ")
