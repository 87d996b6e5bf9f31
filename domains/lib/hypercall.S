/*
 * Hypercall wrappers.  Xen on ARM: number in r12, arguments in r0-r4,
 * "hvc #0xEA1" (A32 encoding 0xE140EA71), result in r0.  Xen may clobber
 * r12 and the argument registers the call uses (debug builds write
 * 0xDEADBEEF there); r0-r3 and r12 are caller-saved under the AAPCS
 * anyway, and none of these calls takes a fifth argument, so r4 is never
 * touched.
 */
#include "xen.h"

    .syntax unified
    .arch armv7-a
    .arch_extension virt
    .arm
    .text

.macro hypercall name, nr
    .global HYPERVISOR_\name
    .type   HYPERVISOR_\name, %function
    .align  2
HYPERVISOR_\name:
    mov     r12, #\nr
    hvc     #XEN_HYPERCALL_TAG
    bx      lr
    .size   HYPERVISOR_\name, . - HYPERVISOR_\name
.endm

    hypercall memory_op,        __HYPERVISOR_memory_op
    hypercall xen_version,      __HYPERVISOR_xen_version
    hypercall console_io,       __HYPERVISOR_console_io
    hypercall grant_table_op,   __HYPERVISOR_grant_table_op
    hypercall vm_assist,        __HYPERVISOR_vm_assist
    hypercall vcpu_op,          __HYPERVISOR_vcpu_op
    hypercall sched_op,         __HYPERVISOR_sched_op
    hypercall event_channel_op, __HYPERVISOR_event_channel_op
    hypercall physdev_op,       __HYPERVISOR_physdev_op
    hypercall hvm_op,           __HYPERVISOR_hvm_op

/*
 * psci_call(fn, a1, a2, a3): SMCCC through "hvc #0" (immediate 0 is the
 * PSCI path, not a hypercall).  The SMCCC lets the callee clobber r0-r3
 * only, which the AAPCS already treats as scratch.
 */
    .global psci_call
    .type   psci_call, %function
    .align  2
psci_call:
    hvc     #0
    bx      lr
    .size   psci_call, . - psci_call
