"""xen/include/public/vcpu.h."""

VCPUOP_initialise = 0
VCPUOP_up = 1
VCPUOP_down = 2
VCPUOP_is_up = 3
VCPUOP_get_runstate_info = 4
VCPUOP_register_runstate_memory_area = 5
VCPUOP_register_vcpu_info = 10

RUNSTATE_running = 0
RUNSTATE_runnable = 1
RUNSTATE_blocked = 2
RUNSTATE_offline = 3

VCPU_RUNSTATE_INFO_SIZE = 48   # state i32 @0; state_entry_time u64 @8; time[4] u64 @16
VCPU_REGISTER_VCPU_INFO_SIZE = 16   # mfn u64 @0; offset u32 @8; rsvd u32 @12
