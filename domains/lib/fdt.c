/*
 * Just enough of the flattened device tree to read /chosen/bootargs, where
 * the toolstack puts a cfg's `extra = "..."`, and to parse `key=value`
 * words from it.
 *
 * The tree is big-endian and its tokens are 4-byte aligned.  It is read a
 * byte at a time: with the MMU off every access must be aligned, and the
 * tree's address (r2 at boot) is only as aligned as the toolstack made it.
 * Every offset is checked against the header's totalsize.
 */
#include "guest.h"

#define FDT_MAGIC       0xD00DFEEDU
#define FDT_BEGIN_NODE  1U
#define FDT_END_NODE    2U
#define FDT_PROP        3U
#define FDT_NOP         4U
#define FDT_END         9U

#define BOOTARGS_MAX    256

static char args[BOOTARGS_MAX];
static bool args_loaded;

static uint32_t be32(const volatile uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Length of the NUL-terminated string at off, or -1 if it runs past end. */
static int str_len(const volatile uint8_t *fdt, uint32_t off, uint32_t end)
{
    for (uint32_t i = off; i < end; i++)
        if (!fdt[i])
            return (int)(i - off);
    return -1;
}

static bool str_eq(const volatile uint8_t *fdt, uint32_t off, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (fdt[off + i] != (uint8_t)s[i])
            return false;
    return true;
}

/* Copy /chosen/bootargs into args; leave it empty if anything is amiss. */
static void load_bootargs(const volatile uint8_t *fdt)
{
    uint32_t size, off, end, strings, strings_size;
    int depth = 0;
    bool in_chosen = false;

    if (!fdt || be32(fdt) != FDT_MAGIC)
        return;
    size = be32(fdt + 4);
    off = be32(fdt + 8);                        /* off_dt_struct */
    strings = be32(fdt + 12);                   /* off_dt_strings */
    strings_size = be32(fdt + 32);
    end = off + be32(fdt + 36);                 /* + size_dt_struct */
    if (size < 40 || end > size || end < off || strings > size || strings_size > size - strings)
        return;

    while (off + 4 <= end) {
        uint32_t token = be32(fdt + off);

        off += 4;
        if (token == FDT_BEGIN_NODE) {
            int len = str_len(fdt, off, end);

            if (len < 0)
                return;
            depth++;
            /* "chosen", or a unit-addressed "chosen@..." */
            in_chosen = depth == 2 && (len == 6 || (len > 6 && fdt[off + 6] == '@'))
                        && str_eq(fdt, off, "chosen", 6);
            off += ((uint32_t)len + 1 + 3) & ~3U;
        } else if (token == FDT_END_NODE) {
            if (--depth < 1)
                return;
            in_chosen = false;
        } else if (token == FDT_PROP) {
            uint32_t len, name;

            if (off + 8 > end)
                return;
            len = be32(fdt + off);
            name = be32(fdt + off + 4);
            off += 8;
            if (len > end - off)
                return;
            if (in_chosen && name < strings_size) {
                int nlen = str_len(fdt, strings + name, strings + strings_size);

                if (nlen == 8 && str_eq(fdt, strings + name, "bootargs", 8)) {
                    uint32_t n = len < BOOTARGS_MAX ? len : BOOTARGS_MAX - 1;

                    for (uint32_t i = 0; i < n; i++)
                        args[i] = (char)fdt[off + i];
                    args[n] = '\0';
                    return;
                }
            }
            off += (len + 3) & ~3U;
        } else if (token == FDT_END) {
            return;
        } else if (token != FDT_NOP) {
            return;
        }
    }
}

const char *bootargs(void)
{
    if (!args_loaded) {
        load_bootargs((const volatile uint8_t *)(uintptr_t)boot_dtb_addr);
        args_loaded = true;
    }
    return args;
}

/* The value of `key=` in the bootargs and its length, or NULL. */
static const char *find_value(const char *key, size_t *len)
{
    const char *s = bootargs();
    size_t klen = strlen(key);

    while (*s) {
        const char *word = s, *v;

        while (*s && *s != ' ')
            s++;
        if ((size_t)(s - word) > klen && !strncmp(word, key, klen) && word[klen] == '=') {
            v = word + klen + 1;
            *len = (size_t)(s - v);
            return v;
        }
        while (*s == ' ')
            s++;
    }
    return NULL;
}

bool bootarg_str(const char *key, char *buf, size_t size)
{
    size_t len;
    const char *v = find_value(key, &len);

    if (!v)
        return false;
    if (size) {
        if (len >= size)
            len = size - 1;
        memcpy(buf, v, len);
        buf[len] = '\0';
    }
    return true;
}

long bootarg_int(const char *key, long def)
{
    size_t len;
    const char *v = find_value(key, &len);
    const char *p, *end;
    unsigned long n = 0, base = 10;
    bool neg = false;

    if (!v)
        return def;
    p = v;
    end = v + len;
    if (p < end && (*p == '-' || *p == '+'))
        neg = *p++ == '-';
    if (end - p > 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
    }
    if (p == end)
        goto bad;
    for (; p < end; p++) {
        unsigned long d;

        if (*p >= '0' && *p <= '9')
            d = (unsigned long)(*p - '0');
        else if (base == 16 && *p >= 'a' && *p <= 'f')
            d = (unsigned long)(*p - 'a' + 10);
        else if (base == 16 && *p >= 'A' && *p <= 'F')
            d = (unsigned long)(*p - 'A' + 10);
        else
            goto bad;
        if (n > (0x7FFFFFFFUL - d) / base)
            goto bad;
        n = n * base + d;
    }
    return neg ? -(long)n : (long)n;
bad:;
    char shown[32];
    size_t shown_len = len < sizeof(shown) - 1 ? len : sizeof(shown) - 1;

    memcpy(shown, v, shown_len);
    shown[shown_len] = '\0';
    test_failure("bootargs: %s=%s is not an integer", key, shown);
}

int fdt_node_prop(const char *node, const char *prop, void *buf, size_t size)
{
    const volatile uint8_t *fdt = (const volatile uint8_t *)(uintptr_t)boot_dtb_addr;
    size_t nlen = strlen(node), plen = strlen(prop);
    uint32_t total, off, end, strings, strings_size;
    int depth = 0;
    bool in_node = false;

    if (!fdt || be32(fdt) != FDT_MAGIC)
        return -1;
    total = be32(fdt + 4);
    off = be32(fdt + 8);
    strings = be32(fdt + 12);
    strings_size = be32(fdt + 32);
    end = off + be32(fdt + 36);
    if (total < 40 || end > total || end < off || strings > total || strings_size > total - strings)
        return -1;
    while (off + 4 <= end) {
        uint32_t token = be32(fdt + off);

        off += 4;
        if (token == FDT_BEGIN_NODE) {
            int len = str_len(fdt, off, end);

            if (len < 0)
                return -1;
            depth++;
            /* "node", or a unit-addressed "node@..." */
            in_node = depth == 2 &&
                      ((size_t)len == nlen || ((size_t)len > nlen && fdt[off + nlen] == '@')) &&
                      str_eq(fdt, off, node, nlen);
            off += ((uint32_t)len + 1 + 3) & ~3U;
        } else if (token == FDT_END_NODE) {
            if (--depth < 1)
                return -1;
            in_node = false;
        } else if (token == FDT_PROP) {
            uint32_t len, name;

            if (off + 8 > end)
                return -1;
            len = be32(fdt + off);
            name = be32(fdt + off + 4);
            off += 8;
            if (len > end - off)
                return -1;
            if (in_node && name < strings_size &&
                str_len(fdt, strings + name, strings + strings_size) == (int)plen &&
                str_eq(fdt, strings + name, prop, plen)) {
                uint8_t *out = buf;

                for (uint32_t i = 0; i < len && i < size; i++)
                    out[i] = fdt[off + i];
                return (int)len;
            }
            off += (len + 3) & ~3U;
        } else if (token != FDT_NOP) {
            return -1;
        }
    }
    return -1;
}
