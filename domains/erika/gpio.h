/*
 * GPIO driver for the Allwinner A20 PIO controller, reached through the
 * domain's iomem pages (iomem = ["1c20,2"]: 0x01c20000-0x01c21fff).
 *
 * A pin is a number bank * 32 + index (PA0 = 0, PD1 = GPIO_PIN('D', 1));
 * every call refuses a pin the A20 does not have with -EINVAL.
 */
#ifndef GPIO_H
#define GPIO_H

#include "guest.h"

#define GPIO_PIN(bank, n)   (((bank) - 'A') * 32 + (n))

/* Map the PIO's section as device memory (before or after mmu_enable). */
void gpio_init(void);
/* The pin number of P<bank><n>, or -EINVAL when the A20 lacks it. */
int gpio_pin(char bank, int n);
/* Function select of a pin: 0 input, 1 output, ... (or -EINVAL). */
int gpio_get_function(int pin);
int gpio_set_output(int pin);
int gpio_set_input(int pin);
/* Drive an output pin: 0 low, anything else high. */
int gpio_write(int pin, int value);
/* The level in the DAT register: driven (output) or seen (input). */
int gpio_read(int pin);
/* Configure as output and drive: what the dom0 pin command does. */
int gpio_output(int pin, int value);
/* "PD1" for a valid pin number (buf of at least 5 bytes). */
const char *gpio_name(int pin, char *buf, size_t size);

#endif /* GPIO_H */
