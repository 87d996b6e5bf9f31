/*
 * shootdown: what one vCPU changes, the other sees, once the architecture
 * says it must: a remapped page after a broadcast TLB invalidation, and
 * patched code after a broadcast instruction-cache invalidation.  Linux
 * relies on both on every SMP system: its TLB flushes (munmap, fork's
 * copy-on-write, a task that migrates back to a CPU which still runs its
 * mm lazily) and its text patching (static keys under stop_machine) only
 * touch the other CPUs through the inner-shareable broadcast.
 *
 * The vCPUs take turns, round r changed by vCPU r % 2 and checked by the
 * other one, which used the old state the round before (so its TLB and its
 * decoded instructions hold the old state, if anything does):
 *
 *   1. a window of one section mapped alternately onto two pages that
 *      hold different markers (mmu_map: TLBIALLIS after the table write);
 *   2. a function in RAM whose `mov r0, #imm` is rewritten, cleaned to the
 *      point of unification and invalidated from the instruction caches by
 *      address (ICIMVAU) in odd rounds and all at once (ICIALLUIS) in even
 *      ones, as Linux's flush_icache_range and __flush_icache_all do.
 *
 * Bootargs: rounds=N (default 40).
 */
#include "guest.h"

#define WINDOW          0x20000000U             /* an otherwise unused section */

/* Two sections of RAM past the image (memory = 32 in the cfg), each starting
 * with its own marker; identity-mapped too, by platform_init. */
static volatile uint32_t *const pages[2] = {
    (volatile uint32_t *)(GUEST_RAM_BASE + (8U << 20)),
    (volatile uint32_t *)(GUEST_RAM_BASE + (9U << 20)),
};
static const uint32_t marker[2] = {0xA0A0A0A0U, 0xB1B1B1B1U};

/* mov r0, #0; bx lr: the immediate is patched (A32, as the guests are built). */
static uint32_t patched_fn[16] __attribute__((aligned(64))) = {0xE3A00000U, 0xE12FFF1EU};

static volatile uint32_t changed, checked;      /* the last round changed / checked */
static volatile uint32_t stale_maps, stale_code;
static volatile bool vcpu1_up;
static uint32_t rounds;

static uint32_t read_window(void)
{
    return *(volatile uint32_t *)WINDOW;
}

static uint32_t call_patched(void)
{
    uint32_t (*fn)(void) = (uint32_t (*)(void))(uintptr_t)patched_fn;

    return fn();
}

static void patch(uint32_t r)
{
    patched_fn[0] = 0xE3A00000U | (r & 0xFF);           /* mov r0, #r */
    WRITE_CP32(patched_fn, 0, c7, c11, 1);              /* DCCMVAU */
    __asm__ volatile("dsb ish" ::: "memory");
    if (r % 2)
        WRITE_CP32(patched_fn, 0, c7, c5, 1);           /* ICIMVAU: broadcast (MP) */
    else
        WRITE_CP32(0, 0, c7, c1, 0);                    /* ICIALLUIS */
    WRITE_CP32(0, 0, c7, c1, 6);                        /* BPIALLIS */
    __asm__ volatile("dsb ish" ::: "memory");
    isb();
}

static void change(uint32_t r)
{
    mmu_map(WINDOW, (uint32_t)(uintptr_t)pages[r % 2], SECTION_SIZE, MMU_NORMAL);
    patch(r);
    if (read_window() != marker[r % 2] || call_patched() != (r & 0xFF))
        test_failure("round %u: the vCPU that made the change does not see it", r);
}

static void check(uint32_t r)
{
    uint32_t seen, ret;

    isb();                              /* the context synchronization after the broadcast */
    seen = read_window();
    ret = call_patched();
    if (seen != marker[r % 2]) {
        if (!stale_maps)
            printk("round %u: vCPU %u reads %08x through the remapped window, not %08x\n",
                   r, smp_processor_id(), seen, marker[r % 2]);
        stale_maps++;
    }
    if (ret != (r & 0xFF)) {
        if (!stale_code)
            printk("round %u: vCPU %u runs the old code: %u, not %u\n",
                   r, smp_processor_id(), ret, r & 0xFF);
        stale_code++;
    }
}

/* Both vCPUs: round r is changed by vCPU r % 2 and checked by the other. */
static void play(unsigned int cpu)
{
    for (uint32_t r = 1; r <= rounds; r++) {
        if (r % 2 == cpu) {
            while (checked != r - 1)
                ;
            change(r);
            dsb();
            changed = r;
        } else {
            while (changed != r)
                ;
            check(r);
            dsb();
            checked = r;
        }
    }
}

static void vcpu1_main(void *arg)
{
    (void)arg;
    mmu_enable();
    read_window();                      /* both vCPUs start with the old state in use */
    call_patched();
    vcpu1_up = true;
    dsb();
    play(1);
    for (;;)
        wfi();
}

int main(void)
{
    long n = bootarg_int("rounds", 40);

    if (n < 2 || n > 100000)
        test_failure("rounds must be 2..100000");
    rounds = (uint32_t)n;
    platform_init();
    pages[0][0] = marker[0];
    pages[1][0] = marker[1];
    mmu_map(WINDOW, (uint32_t)(uintptr_t)pages[0], SECTION_SIZE, MMU_NORMAL);
    read_window();
    call_patched();
    test_check("PSCI CPU_ON", smp_start_cpu(1, vcpu1_main, NULL));
    while (!vcpu1_up)
        ;
    play(0);
    while (checked != rounds)
        ;
    printk("shootdown: %u rounds, %u stale mappings, %u stale code\n",
           rounds, stale_maps, stale_code);
    if (stale_maps || stale_code)
        test_failure("a vCPU did not see its sibling's change");
    test_success();
}
