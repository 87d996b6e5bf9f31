/*
 * A20 PIO ("Port Controller" in the A20 user manual): banks A..I, 0x24
 * bytes apart from 0x01c20800, each with CFG0-3 (4 bits per pin, 8 pins a
 * register; 0 input, 1 output), DAT (one bit per pin), DRV0-1 and PULL0-1
 * (2 bits per pin).  Read-modify-writes run with IRQs masked, so an ISR
 * and a task can share the driver.
 */
#include "gpio.h"

#define PIO_BASE        0x01C20800U
#define PIO_BANK_SIZE   0x24U
#define PIO_CFG(n)      (0x00U + 4U * (n))
#define PIO_DAT         0x10U

#define CFG_MASK        0x7U            /* bit 3 of each field is reserved */
#define FUNC_INPUT      0U
#define FUNC_OUTPUT     1U

/* Pins each bank has on the A20 (A..I). */
static const uint8_t bank_pins[] = { 18, 24, 25, 28, 12, 6, 12, 28, 22 };

static volatile uint32_t *reg(unsigned int bank, uint32_t off)
{
    return (volatile uint32_t *)(uintptr_t)(PIO_BASE + bank * PIO_BANK_SIZE + off);
}

static bool valid(int pin)
{
    return pin >= 0 && (unsigned int)pin / 32 < ARRAY_SIZE(bank_pins) &&
           (unsigned int)pin % 32 < bank_pins[pin / 32];
}

void gpio_init(void)
{
    /* Only the two granted pages of this section may be touched; device
     * memory is never accessed speculatively, so mapping all of it is safe. */
    mmu_identity_map(PIO_BASE & ~(SECTION_SIZE - 1), SECTION_SIZE, MMU_DEVICE);
}

int gpio_pin(char bank, int n)
{
    int pin;

    if (bank < 'A' || bank > 'I' || n < 0 || n >= 32)
        return -XEN_EINVAL;
    pin = GPIO_PIN(bank, n);
    return valid(pin) ? pin : -XEN_EINVAL;
}

const char *gpio_name(int pin, char *buf, size_t size)
{
    if (!valid(pin))
        snprintf(buf, size, "P?%d", pin);
    else
        snprintf(buf, size, "P%c%d", 'A' + pin / 32, pin % 32);
    return buf;
}

int gpio_get_function(int pin)
{
    unsigned int n = (unsigned int)pin % 32;

    if (!valid(pin))
        return -XEN_EINVAL;
    return (int)(*reg(pin / 32, PIO_CFG(n / 8)) >> (n % 8 * 4) & CFG_MASK);
}

static int set_function(int pin, uint32_t func)
{
    unsigned int n = (unsigned int)pin % 32, shift = n % 8 * 4;
    volatile uint32_t *cfg;
    uint32_t flags;

    if (!valid(pin))
        return -XEN_EINVAL;
    cfg = reg(pin / 32, PIO_CFG(n / 8));
    flags = local_irq_save();
    *cfg = (*cfg & ~(CFG_MASK << shift)) | func << shift;
    local_irq_restore(flags);
    return 0;
}

int gpio_set_output(int pin)
{
    return set_function(pin, FUNC_OUTPUT);
}

int gpio_set_input(int pin)
{
    return set_function(pin, FUNC_INPUT);
}

int gpio_write(int pin, int value)
{
    volatile uint32_t *dat;
    uint32_t flags, bit;

    if (!valid(pin))
        return -XEN_EINVAL;
    dat = reg(pin / 32, PIO_DAT);
    bit = 1U << (pin % 32);
    flags = local_irq_save();
    *dat = value ? *dat | bit : *dat & ~bit;
    local_irq_restore(flags);
    return 0;
}

int gpio_read(int pin)
{
    if (!valid(pin))
        return -XEN_EINVAL;
    return (int)(*reg(pin / 32, PIO_DAT) >> (pin % 32) & 1);
}

int gpio_output(int pin, int value)
{
    int rc = gpio_set_output(pin);

    /* Function first, then the level, as the ERIKA demo does: the pin
     * briefly drives its old DAT bit, the reset value being low. */
    return rc < 0 ? rc : gpio_write(pin, value);
}
