/*
 * printf.c - a small printf subset.
 *
 * Conversions: %d %i %u %x %X %c %s %p %%
 * Flags/width: '-' (left justify), '0' (zero pad), a decimal width or '*'.
 * Length: 'l' (same as int on RV32), 'll' (64-bit), 'z' (size_t).
 */
#include "hf.h"

struct sink {
    char *buf;      /* NULL: write to the console */
    size_t size;    /* buffer capacity including the NUL */
    size_t len;     /* characters produced so far */
};

static void emit(struct sink *s, char c)
{
    if (!s->buf)
        hf_putc(c);
    else if (s->len + 1 < s->size)
        s->buf[s->len] = c;
    s->len++;
}

static void emit_padded(struct sink *s, const char *p, size_t n, int width,
                        int left, char pad)
{
    int fill = width > (int)n ? width - (int)n : 0;
    if (!left && pad == '0' && n > 0 && *p == '-') {
        /* keep the sign in front of the zeros */
        emit(s, *p++);
        n--;
    }
    if (!left)
        while (fill-- > 0)
            emit(s, pad);
    while (n--)
        emit(s, *p++);
    if (left)
        while (fill-- > 0)
            emit(s, ' ');
}

/* Convert v in the given base into the end of tmp; returns the start. */
static char *utoa64(uint64_t v, unsigned base, int upper, char *end)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char *p = end;
    if (base == 16) {
        /* no 64-bit division needed for hex */
        do {
            *--p = digits[v & 15];
            v >>= 4;
        } while (v);
    } else if (v <= 0xffffffffu) {
        uint32_t w = (uint32_t)v;
        do {
            *--p = digits[w % 10];
            w /= 10;
        } while (w);
    } else {
        do {
            *--p = digits[v % 10];
            v /= 10;
        } while (v);
    }
    return p;
}

static int format(struct sink *s, const char *fmt, va_list ap)
{
    char tmp[24];
    char *end = tmp + sizeof(tmp);

    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            emit(s, *fmt);
            continue;
        }
        fmt++;
        int left = 0;
        char pad = ' ';
        for (;; fmt++) {
            if (*fmt == '-')
                left = 1;
            else if (*fmt == '0')
                pad = '0';
            else
                break;
        }
        int width = 0;
        if (*fmt == '*') {
            width = va_arg(ap, int);
            fmt++;
        } else {
            while (*fmt >= '0' && *fmt <= '9')
                width = width * 10 + (*fmt++ - '0');
        }
        int longs = 0;
        while (*fmt == 'l') {
            longs++;
            fmt++;
        }
        if (*fmt == 'z')
            fmt++;
        if (left)
            pad = ' ';

        switch (*fmt) {
        case 'd':
        case 'i': {
            int64_t v = longs >= 2 ? va_arg(ap, long long) : va_arg(ap, int);
            uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
            char *p = utoa64(u, 10, 0, end);
            if (v < 0)
                *--p = '-';
            emit_padded(s, p, (size_t)(end - p), width, left, pad);
            break;
        }
        case 'u':
        case 'x':
        case 'X': {
            uint64_t v = longs >= 2 ? va_arg(ap, unsigned long long)
                                    : va_arg(ap, unsigned int);
            char *p = utoa64(v, *fmt == 'u' ? 10 : 16, *fmt == 'X', end);
            emit_padded(s, p, (size_t)(end - p), width, left, pad);
            break;
        }
        case 'p': {
            uintptr_t v = (uintptr_t)va_arg(ap, void *);
            char *p = utoa64(v, 16, 0, end);
            while (end - p < 8)
                *--p = '0';
            *--p = 'x';
            *--p = '0';
            emit_padded(s, p, (size_t)(end - p), width, left, ' ');
            break;
        }
        case 'c': {
            char c = (char)va_arg(ap, int);
            emit_padded(s, &c, 1, width, left, ' ');
            break;
        }
        case 's': {
            const char *str = va_arg(ap, const char *);
            if (!str)
                str = "(null)";
            emit_padded(s, str, hf_strlen(str), width, left, ' ');
            break;
        }
        case '%':
            emit(s, '%');
            break;
        case '\0':
            fmt--; /* stray '%' at the end */
            break;
        default:
            emit(s, '%');
            emit(s, *fmt);
            break;
        }
    }
    return (int)s->len;
}

int hf_vprintf(const char *fmt, va_list ap)
{
    struct sink s = { 0, 0, 0 };
    return format(&s, fmt, ap);
}

int hf_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = hf_vprintf(fmt, ap);
    va_end(ap);
    return n;
}

int hf_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct sink s = { buf, size, 0 };
    int n = format(&s, fmt, ap);
    if (size)
        buf[s.len < size ? s.len : size - 1] = '\0';
    return n;
}

int hf_snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = hf_vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}
