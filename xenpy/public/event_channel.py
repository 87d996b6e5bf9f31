"""xen/include/public/event_channel.h, plus the VIRQ numbers of xen.h and the 2-level ABI layout
of shared_info / vcpu_info on ARM (xen_ulong_t is 64-bit on arm32 as well as arm64)."""

import struct

EVTCHNOP_bind_interdomain = 0
EVTCHNOP_bind_virq = 1
EVTCHNOP_bind_pirq = 2
EVTCHNOP_close = 3
EVTCHNOP_send = 4
EVTCHNOP_status = 5
EVTCHNOP_alloc_unbound = 6
EVTCHNOP_bind_ipi = 7
EVTCHNOP_bind_vcpu = 8
EVTCHNOP_unmask = 9
EVTCHNOP_reset = 10
EVTCHNOP_init_control = 11
EVTCHNOP_expand_array = 12
EVTCHNOP_set_priority = 13
EVTCHNOP_reset_cont = 14          # Xen-internal continuation of reset; guests may issue it too

EVTCHNOP_NAMES = {v: k[len("EVTCHNOP_"):] for k, v in dict(globals()).items()
                  if k.startswith("EVTCHNOP_")}

BIND_PIRQ__WILL_SHARE = 1

EVTCHNSTAT_closed = 0
EVTCHNSTAT_unbound = 1
EVTCHNSTAT_interdomain = 2
EVTCHNSTAT_pirq = 3
EVTCHNSTAT_virq = 4
EVTCHNSTAT_ipi = 5

# Op structs (little-endian; the same layout on arm32 and arm64).
ALLOC_UNBOUND = struct.Struct("<HHI")        # dom, remote_dom IN; port OUT
BIND_INTERDOMAIN = struct.Struct("<H2xII")   # remote_dom, remote_port IN; local_port OUT
BIND_VIRQ = struct.Struct("<III")            # virq, vcpu IN; port OUT
BIND_PIRQ = struct.Struct("<III")            # pirq, flags IN; port OUT
BIND_IPI = struct.Struct("<II")              # vcpu IN; port OUT
PORT_ONLY = struct.Struct("<I")              # evtchn_close, evtchn_send, evtchn_unmask
STATUS = struct.Struct("<H2xIII8s")          # dom, port IN; status, vcpu, union u OUT
STATUS_UNBOUND = struct.Struct("<H")         # u.unbound.dom, and u.interdomain.dom
STATUS_INTERDOMAIN_PORT_OFFSET = 4           # u.interdomain.port: u32 at u + 4
STATUS_VIRQ = struct.Struct("<I")            # u.virq (u.pirq has the same shape)
BIND_VCPU = struct.Struct("<II")             # port, vcpu
RESET = struct.Struct("<H")                  # dom
INIT_CONTROL_SIZE = 24
EXPAND_ARRAY_SIZE = 8
SET_PRIORITY = struct.Struct("<II")          # port, priority

# VIRQs (xen.h). Kinds: per-vCPU (V), global (G, one handler domain, dom0 by default),
# per-domain (D).
VIRQ_TIMER = 0       # V
VIRQ_DEBUG = 1       # V
VIRQ_CONSOLE = 2     # G
VIRQ_DOM_EXC = 3     # G
VIRQ_TBUF = 4        # G
VIRQ_DEBUGGER = 6    # G
VIRQ_XENOPROF = 7    # V
VIRQ_CON_RING = 8    # G
VIRQ_PCPU_STATE = 9  # G
VIRQ_MEM_EVENT = 10  # G
VIRQ_ARGO = 11       # D
VIRQ_ENOMEM = 12     # G
VIRQ_XENPMU = 13     # V
VIRQ_ARCH_0 = 16     # 16..23: global on ARM (arch_get_virq_type)
NR_VIRQS = 24

# 2-level ABI: 64 words of 64 bits = 4096 ports.
EVTCHN_2L_NR_CHANNELS = 8 * 8 * 64
BITS_PER_EVTCHN_WORD = 64

# FIFO ABI constants (not implemented by xenpy: init_control answers -EOPNOTSUPP).
EVTCHN_FIFO_PRIORITY_MAX = 0
EVTCHN_FIFO_PRIORITY_DEFAULT = 7
EVTCHN_FIFO_PRIORITY_MIN = 15
EVTCHN_FIFO_LINK_BITS = 17
EVTCHN_FIFO_NR_CHANNELS = 1 << EVTCHN_FIFO_LINK_BITS

# struct vcpu_info (48 bytes on ARM; no evtchn_upcall_mask: byte 1 is padding).
VCPU_INFO_SIZE = 48
VCPU_INFO_UPCALL_PENDING = 0     # u8
VCPU_INFO_PENDING_SEL = 8        # xen_ulong_t (u64)
VCPU_INFO_TIME = 16              # struct vcpu_time_info, 32 bytes

# struct shared_info (1088 bytes on ARM, XEN_LEGACY_MAX_VCPUS = 1).
XEN_LEGACY_MAX_VCPUS = 1
SHARED_INFO_VCPU_INFO = 0
SHARED_INFO_EVTCHN_PENDING = 48  # xen_ulong_t[64]
SHARED_INFO_EVTCHN_MASK = 560    # xen_ulong_t[64]
SHARED_INFO_WC_VERSION = 1072
SHARED_INFO_WC_SEC = 1076
SHARED_INFO_WC_NSEC = 1080
SHARED_INFO_WC_SEC_HI = 1084
SHARED_INFO_SIZE = 1088
