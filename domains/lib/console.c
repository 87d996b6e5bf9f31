/*
 * Console output through HYPERVISOR_console_io(CONSOLEIO_write).
 *
 * Xen buffers a domU's console writes per line, so printk hands it whole
 * lines: each vCPU accumulates its own line and writes it when it sees
 * '\n' or the buffer fills.  One buffer per vCPU keeps lines from two
 * vCPUs from interleaving; IRQs are masked while a buffer is touched so an
 * interrupt handler may printk too.
 */
#include "guest.h"

#define LINE_SIZE 128

struct line {
    unsigned int len;
    char buf[LINE_SIZE];
};

static struct line lines[NR_CPUS];

int console_write(const char *buf, size_t len)
{
    return HYPERVISOR_console_io(CONSOLEIO_write, (int)len, buf);
}

static struct line *this_line(void)
{
    unsigned int cpu = smp_processor_id();

    return &lines[cpu < NR_CPUS ? cpu : 0];
}

/* A failing write cannot be reported anywhere, so its result is dropped. */
static void line_write(struct line *l)
{
    if (l->len) {
        console_write(l->buf, l->len);
        l->len = 0;
    }
}

static void line_putc(void *ctx, char c)
{
    struct line *l = ctx;

    l->buf[l->len++] = c;
    if (c == '\n' || l->len == LINE_SIZE)
        line_write(l);
}

/* ---- formatter ----------------------------------------------------------- */

typedef void (*emit_fn)(void *ctx, char c);

/* 64-bit division by 10 without the compiler runtime (__aeabi_uldivmod). */
static uint64_t divmod10(uint64_t n, unsigned int *rem)
{
    uint64_t q = 0;
    uint32_t r = 0;

    if (n >> 32 == 0) {
        uint32_t n32 = (uint32_t)n;

        *rem = n32 % 10;
        return n32 / 10;
    }
    for (int bit = 63; bit >= 0; bit--) {
        r = (r << 1) | (uint32_t)((n >> bit) & 1);
        if (r >= 10) {
            r -= 10;
            q |= (uint64_t)1 << bit;
        }
    }
    *rem = r;
    return q;
}

struct spec {
    bool left;          /* '-' */
    char pad;           /* ' ' or '0' */
    unsigned int width;
};

static void emit_padded(emit_fn emit, void *ctx, const struct spec *sp,
                        const char *prefix, const char *s, size_t len)
{
    size_t plen = strlen(prefix);
    size_t fill = sp->width > plen + len ? sp->width - plen - len : 0;

    if (!sp->left && sp->pad == ' ')
        while (fill--)
            emit(ctx, ' ');
    while (*prefix)
        emit(ctx, *prefix++);
    if (!sp->left && sp->pad == '0')
        while (fill--)
            emit(ctx, '0');
    while (len--)
        emit(ctx, *s++);
    if (sp->left)
        while (fill--)
            emit(ctx, ' ');
}

static void emit_number(emit_fn emit, void *ctx, const struct spec *sp,
                        uint64_t v, bool negative, unsigned int base,
                        bool upper, const char *prefix)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char tmp[24];
    size_t n = sizeof(tmp);

    do {
        unsigned int d;

        if (base == 16) {
            d = (unsigned int)(v & 0xf);
            v >>= 4;
        } else {
            v = divmod10(v, &d);
        }
        tmp[--n] = digits[d];
    } while (v);
    emit_padded(emit, ctx, sp, negative ? "-" : prefix, tmp + n, sizeof(tmp) - n);
}

static void vformat(emit_fn emit, void *ctx, const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        struct spec sp = { .left = false, .pad = ' ', .width = 0 };
        int lng = 0;
        const char *start = fmt;

        if (*fmt != '%') {
            emit(ctx, *fmt);
            continue;
        }
        fmt++;
        for (;; fmt++) {
            if (*fmt == '-')
                sp.left = true;
            else if (*fmt == '0')
                sp.pad = '0';
            else
                break;
        }
        while (*fmt >= '0' && *fmt <= '9')
            sp.width = sp.width * 10 + (unsigned int)(*fmt++ - '0');
        for (; *fmt == 'l' || *fmt == 'z'; fmt++)
            lng += *fmt == 'l' ? 1 : 0;   /* size_t and long are 32-bit here */

        switch (*fmt) {
        case 'd':
        case 'i': {
            int64_t v = lng >= 2 ? va_arg(ap, long long) : va_arg(ap, int);
            bool neg = v < 0;

            emit_number(emit, ctx, &sp, neg ? 0 - (uint64_t)v : (uint64_t)v,
                        neg, 10, false, "");
            break;
        }
        case 'u':
        case 'x':
        case 'X': {
            uint64_t v = lng >= 2 ? va_arg(ap, unsigned long long)
                                  : va_arg(ap, unsigned int);

            emit_number(emit, ctx, &sp, v, false, *fmt == 'u' ? 10 : 16,
                        *fmt == 'X', "");
            break;
        }
        case 'p': {
            struct spec p = { .left = false, .pad = '0', .width = 10 };

            emit_number(emit, ctx, &p, (uintptr_t)va_arg(ap, void *), false,
                        16, false, "0x");
            break;
        }
        case 'c': {
            char c = (char)va_arg(ap, int);

            emit_padded(emit, ctx, &sp, "", &c, 1);
            break;
        }
        case 's': {
            const char *s = va_arg(ap, const char *);

            if (!s)
                s = "(null)";
            emit_padded(emit, ctx, &sp, "", s, strlen(s));
            break;
        }
        case '%':
            emit(ctx, '%');
            break;
        default:
            /* Unknown conversion: show it as written rather than guess. */
            while (start <= fmt && *start)
                emit(ctx, *start++);
            if (!*fmt)
                return;
            break;
        }
    }
}

/* ---- printk -------------------------------------------------------------- */

void vprintk(const char *fmt, va_list ap)
{
    uint32_t flags = local_irq_save();

    vformat(line_putc, this_line(), fmt, ap);
    local_irq_restore(flags);
}

void printk(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vprintk(fmt, ap);
    va_end(ap);
}

void console_flush(void)
{
    uint32_t flags = local_irq_save();
    struct line *l = this_line();

    if (l->len)
        line_putc(l, '\n');
    local_irq_restore(flags);
}

/* ---- snprintf ------------------------------------------------------------ */

struct strbuf {
    char *buf;
    size_t size, len;
};

static void strbuf_putc(void *ctx, char c)
{
    struct strbuf *sb = ctx;

    if (sb->len + 1 < sb->size)
        sb->buf[sb->len] = c;
    sb->len++;
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct strbuf sb = { .buf = buf, .size = size, .len = 0 };

    vformat(strbuf_putc, &sb, fmt, ap);
    if (size)
        buf[sb.len < size ? sb.len : size - 1] = '\0';
    return (int)sb.len;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}
