/*
 * rtos: a guest whose zImage header is an RTOS port's, not Linux's.
 *
 * Some RTOS ports (ERIKA's among them) fill the header's end word with the
 * image size instead of an end address, so `end` is below `start`.  Xen's
 * domU builder checks only the magic and loads the whole file; the guest
 * checks that it was loaded whole and where it is linked, then runs a few
 * timer ticks like the kernel's tick would.
 */
#include "guest.h"

static volatile uint32_t ticks;

static void on_tick(unsigned int irq, void *arg)
{
    (void)irq;
    (void)arg;
    ticks++;
    timer_set_tval((int32_t)(timer_freq() / 100));      /* 10 ms */
}

int main(void)
{
    const volatile uint32_t *head = (const volatile uint32_t *)_start;
    uint32_t magic = head[9], start = head[10], end = head[11];
    uint32_t size = (uint32_t)(_edata - _start);
    const volatile uint32_t *last = (const volatile uint32_t *)(_edata - 4);

    platform_init();
    printk("rtos: zImage magic %08x start %08x end word %08x (image %u bytes)\n",
           magic, start, end, size);
    if (end != size || end >= start)
        test_failure("the end word should be the image size %u, not %08x", size, end);
    /* The last word of the file is there: the toolstack loaded it all. */
    printk("rtos: last word of the image at %p: %08x\n", (const void *)last, *last);

    timer_irq_init(on_tick, NULL);
    timer_set_tval((int32_t)(timer_freq() / 100));
    timer_set_ctl(1);
    local_irq_enable();
    while (ticks < 5)
        wfi();
    timer_set_ctl(0);
    printk("rtos: %u ticks of 10 ms\n", ticks);
    test_success();
}
