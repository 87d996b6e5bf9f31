"""xen/include/public/grant_table.h: grant-table ops, flags, status codes and struct layouts.

Only version 1 entries exist on ARM (Xen/ARM is built with GNTTAB_MAX_VERSION 1), so the v2
structures are not described here. Every struct is little-endian and has the same layout on
arm32 and arm64 (a guest handle inside a struct is 8 bytes).
"""
import struct

GNTTABOP_map_grant_ref = 0
GNTTABOP_unmap_grant_ref = 1
GNTTABOP_setup_table = 2
GNTTABOP_dump_table = 3            # "debugging use only": prints the table to the console
GNTTABOP_transfer = 4
GNTTABOP_copy = 5
GNTTABOP_query_size = 6
GNTTABOP_unmap_and_replace = 7
GNTTABOP_set_version = 8
GNTTABOP_get_status_frames = 9
GNTTABOP_get_version = 10
GNTTABOP_swap_grant_ref = 11
GNTTABOP_cache_flush = 12

GNTTABOP_NAMES = {v: k[len("GNTTABOP_"):] for k, v in dict(globals()).items()
                  if k.startswith("GNTTABOP_")}

# The upper bits of the command carry a continuation argument (only cache_flush may use them).
GNTTABOP_CONTINUATION_ARG_SHIFT = 12
GNTTABOP_CMD_MASK = (1 << GNTTABOP_CONTINUATION_ARG_SHIFT) - 1

GNTTAB_NR_RESERVED_ENTRIES = 8
GNTTAB_RESERVED_CONSOLE = 0
GNTTAB_RESERVED_XENSTORE = 1

# grant_entry_v1.flags
GTF_invalid = 0
GTF_permit_access = 1
GTF_accept_transfer = 2
GTF_transitive = 3
GTF_type_mask = 3
GTF_readonly = 1 << 2
GTF_reading = 1 << 3
GTF_writing = 1 << 4
GTF_PWT = 1 << 5
GTF_PCD = 1 << 6
GTF_PAT = 1 << 7
GTF_sub_page = 1 << 8
GTF_transfer_committed = 1 << 2
GTF_transfer_completed = 1 << 3

# gnttab_map_grant_ref.flags
GNTMAP_device_map = 1 << 0
GNTMAP_host_map = 1 << 1
GNTMAP_readonly = 1 << 2
GNTMAP_application_map = 1 << 3
GNTMAP_contains_pte = 1 << 4
GNTMAP_guest_avail0 = 16
GNTMAP_guest_avail_mask = (0xFFFFFFFF << GNTMAP_guest_avail0) & 0xFFFFFFFF

# gnttab_copy.flags
GNTCOPY_source_gref = 1 << 0
GNTCOPY_dest_gref = 1 << 1

# gnttab_cache_flush.op
GNTTAB_CACHE_CLEAN = 1 << 0
GNTTAB_CACHE_INVAL = 1 << 1
GNTTAB_CACHE_SOURCE_GREF = 1 << 31

# Status codes (int16 in every op struct).
GNTST_okay = 0
GNTST_general_error = -1
GNTST_bad_domain = -2
GNTST_bad_gntref = -3
GNTST_bad_handle = -4
GNTST_bad_virt_addr = -5
GNTST_bad_dev_addr = -6
GNTST_no_device_space = -7
GNTST_permission_denied = -8
GNTST_bad_page = -9
GNTST_bad_copy_arg = -10
GNTST_address_too_big = -11
GNTST_eagain = -12
GNTST_no_space = -13

GNTST_NAMES = {v: k[len("GNTST_"):] for k, v in dict(globals()).items() if k.startswith("GNTST_")}

# GNTTABOP_error_msgs, indexed by -status.
GNTTABOP_error_msgs = (
    "okay",
    "undefined error",
    "unrecognised domain id",
    "invalid grant reference",
    "invalid mapping handle",
    "invalid virtual address",
    "invalid device address",
    "no spare translation slot in the I/O MMU",
    "permission denied",
    "bad page",
    "copy arguments cross page boundary",
    "page address size too large",
    "operation not done; try again",
    "out of space",
)


def gntst_message(status: int) -> str:
    return GNTTABOP_error_msgs[-status] if -len(GNTTABOP_error_msgs) < status <= 0 else \
        f"unknown status {status}"


# struct grant_entry_v1 (8 bytes): flags u16, domid u16, frame u32.
GRANT_ENTRY_V1 = struct.Struct("<HHI")
GRANT_ENTRY_V1_FLAGS = 0
GRANT_ENTRY_V1_DOMID = 2
GRANT_ENTRY_V1_FRAME = 4

# Op structs. Comments give field @offset; OUT fields are written by the hypervisor.
# gnttab_map_grant_ref (32): host_addr u64 @0, flags u32 @8, ref u32 @12, dom u16 @16,
# status i16 @18 OUT, handle u32 @20 OUT, dev_bus_addr u64 @24 OUT.
MAP_GRANT_REF = struct.Struct("<QIIHhIQ")
# gnttab_unmap_grant_ref (24): host_addr u64 @0, dev_bus_addr u64 @8, handle u32 @16,
# status i16 @20 OUT.
UNMAP_GRANT_REF = struct.Struct("<QQIh2x")
UNMAP_GRANT_REF_STATUS = 20
# gnttab_setup_table (24): dom u16 @0, nr_frames u32 @4, status i16 @8 OUT, frame_list @16.
SETUP_TABLE = struct.Struct("<H2xIh6xQ")
SETUP_TABLE_STATUS = 8
# gnttab_dump_table (4): dom u16 @0, status i16 @2.
DUMP_TABLE = struct.Struct("<Hh")
# gnttab_transfer (24): mfn u64 @0, domid u16 @8, ref u32 @12, status i16 @16.
TRANSFER = struct.Struct("<QH2xIh6x")
# gnttab_copy (40): source {u @0 (ref u32 or gmfn u64), domid u16 @8, offset u16 @10},
# dest {same @16}, len u16 @32, flags u16 @34, status i16 @36 OUT.
COPY = struct.Struct("<QHH4xQHH4xHHh2x")
COPY_STATUS = 36
# gnttab_query_size (16): dom u16 @0, nr_frames u32 @4 OUT, max_nr_frames u32 @8 OUT,
# status i16 @12 OUT.
QUERY_SIZE = struct.Struct("<H2xIIh2x")
# gnttab_unmap_and_replace (24): host_addr u64 @0, new_addr u64 @8, handle u32 @16,
# status i16 @20 OUT.
UNMAP_AND_REPLACE = struct.Struct("<QQIh2x")
UNMAP_AND_REPLACE_STATUS = 20
# gnttab_set_version (4): version u32 IN/OUT.
SET_VERSION = struct.Struct("<I")
# gnttab_get_status_frames (16): nr_frames u32 @0, dom u16 @4, status i16 @6 OUT, frame_list @8.
GET_STATUS_FRAMES = struct.Struct("<IHhQ")
GET_STATUS_FRAMES_STATUS = 6
# gnttab_get_version (8): dom u16 @0, pad u16 @2, version u32 @4 OUT.
GET_VERSION = struct.Struct("<HHI")
GET_VERSION_VERSION = 4
# gnttab_swap_grant_ref (12): ref_a u32 @0, ref_b u32 @4, status i16 @8 OUT.
SWAP_GRANT_REF = struct.Struct("<IIh2x")
SWAP_GRANT_REF_STATUS = 8
# gnttab_cache_flush (16): a (dev_bus_addr u64 or ref u32) @0, offset u16 @8, length u16 @10,
# op u32 @12.
CACHE_FLUSH = struct.Struct("<QHHI")

XEN_PFN = struct.Struct("<Q")         # one frame_list element (xen_pfn_t is 64-bit on ARM)
STATUS = struct.Struct("<h")          # a status field written on its own

# memory.h: OR'ed into xen_add_to_physmap.idx to name a v2 status frame instead of a shared frame.
XENMAPIDX_grant_table_status = 0x80000000
