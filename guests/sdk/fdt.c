/*
 * fdt.c - just enough of a flattened device tree reader.
 *
 * Finds /chosen/bootargs, the extent of the first /memory node and the
 * number of harts (the cpu@N nodes under /cpus). Every
 * read is bounds-checked against the header's totalsize, and the header
 * and the blob's last word are probed with a trap-safe read first, so a
 * missing or corrupt FDT pointer yields "no FDT" instead of a crash.
 */
#include "hf.h"

#define FDT_MAGIC      0xd00dfeedu
#define FDT_BEGIN_NODE 1u
#define FDT_END_NODE   2u
#define FDT_PROP       3u
#define FDT_NOP        4u
#define FDT_END        9u
#define FDT_MAX_SIZE   (1u << 20) /* refuse absurd blobs */

struct fdt {
    const uint8_t *base;
    uint32_t size;
    uint32_t off_struct, size_struct;
    uint32_t off_strings, size_strings;
};

static uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
           ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static int fdt_open(uintptr_t addr, struct fdt *f)
{
    uint32_t w;

    if (addr == 0 || (addr & 3) || addr < HF_RAM_BASE ||
        addr > 0xffffffffu - FDT_MAX_SIZE)
        return -1;
    if (hf_try_read32(addr, &w) || be32((const uint8_t *)&w) != FDT_MAGIC)
        return -1;
    const uint8_t *b = (const uint8_t *)addr;
    f->base = b;
    f->size = be32(b + 4);
    f->off_struct = be32(b + 8);
    f->off_strings = be32(b + 12);
    uint32_t version = be32(b + 20);
    f->size_strings = be32(b + 32);
    f->size_struct = be32(b + 36);
    if (f->size < 40 || f->size > FDT_MAX_SIZE || version < 17)
        return -1;
    /* the whole blob must be readable */
    if (hf_try_read32((addr + f->size - 4) & ~3u, &w))
        return -1;
    if (f->off_struct > f->size || f->size_struct > f->size - f->off_struct ||
        f->off_strings > f->size ||
        f->size_strings > f->size - f->off_strings || (f->off_struct & 3))
        return -1;
    return 0;
}

/* Property name at string offset `off`, or NULL if out of bounds. */
static const char *fdt_string(const struct fdt *f, uint32_t off)
{
    if (off >= f->size_strings)
        return 0;
    const char *s = (const char *)f->base + f->off_strings + off;
    uint32_t max = f->size_strings - off;
    for (uint32_t i = 0; i < max; i++)
        if (s[i] == '\0')
            return s;
    return 0;
}

/* Called for every property: `node` is the name of the node holding it
 * (depth 1 is the root, whose name is ""), `parent` that of its parent
 * ("" at depth 1 and beyond the tracked depth). */
typedef int (*prop_fn)(void *ctx, int depth, const char *parent,
                       const char *node, const char *name,
                       const uint8_t *val, uint32_t len);

/* Walk the structure block calling fn for every property; stop when fn
 * returns non-zero. Returns -1 on a malformed blob. */
static int fdt_walk(const struct fdt *f, prop_fn fn, void *ctx)
{
    const uint8_t *p = f->base + f->off_struct;
    uint32_t off = 0, end = f->size_struct;
    int depth = 0;
    const char *path[8] = { 0 };

    while (off + 4 <= end) {
        uint32_t tok = be32(p + off);
        off += 4;
        switch (tok) {
        case FDT_BEGIN_NODE: {
            const char *name = (const char *)p + off;
            uint32_t n = 0;
            while (off + n < end && name[n])
                n++;
            if (off + n >= end)
                return -1;
            if (depth < 8)
                path[depth] = name;
            depth++;
            off = (off + n + 1 + 3) & ~3u;
            break;
        }
        case FDT_END_NODE:
            if (depth == 0)
                return -1;
            depth--;
            break;
        case FDT_PROP: {
            if (off + 8 > end)
                return -1;
            uint32_t len = be32(p + off);
            uint32_t nameoff = be32(p + off + 4);
            off += 8;
            if (len > end - off)
                return -1;
            const char *name = fdt_string(f, nameoff);
            if (!name)
                return -1;
            const char *node = depth >= 1 && depth <= 8 ? path[depth - 1] : "";
            const char *parent = depth >= 2 && depth <= 8 ? path[depth - 2] : "";
            if (fn(ctx, depth, parent, node, name, p + off, len))
                return 0;
            off = (off + len + 3) & ~3u;
            break;
        }
        case FDT_NOP:
            break;
        case FDT_END:
            return 0;
        default:
            return -1;
        }
    }
    return -1;
}

struct chosen_ctx {
    const char *val;
    size_t len;
};

static int find_bootargs(void *ctx, int depth, const char *parent,
                         const char *node, const char *name,
                         const uint8_t *val, uint32_t len)
{
    struct chosen_ctx *c = ctx;
    (void)parent;
    if (depth == 2 && hf_strcmp(node, "chosen") == 0 &&
        hf_strcmp(name, "bootargs") == 0) {
        size_t n = 0;
        while (n < len && val[n])
            n++;
        c->val = (const char *)val;
        c->len = n;
        return 1;
    }
    return 0;
}

const char *hf_fdt_bootargs(uintptr_t addr, size_t *len)
{
    struct fdt f;
    struct chosen_ctx c = { 0, 0 };
    if (fdt_open(addr, &f) == 0)
        fdt_walk(&f, find_bootargs, &c);
    *len = c.len;
    return c.val;
}

struct mem_ctx {
    uint32_t base, size;
    int found;
};

static int find_memory(void *ctx, int depth, const char *parent,
                       const char *node, const char *name,
                       const uint8_t *val, uint32_t len)
{
    struct mem_ctx *m = ctx;
    (void)parent;
    /* /memory@... reg = <addr size> with #address-cells = #size-cells = 2
     * on virt; accept 1-cell pairs too. */
    if (depth == 2 && hf_strncmp(node, "memory", 6) == 0 &&
        (node[6] == '@' || node[6] == '\0') && hf_strcmp(name, "reg") == 0) {
        if (len >= 16) {
            if (be32(val) != 0 || be32(val + 8) != 0)
                return 0; /* beyond 4 GiB: not for RV32 */
            m->base = be32(val + 4);
            m->size = be32(val + 12);
        } else if (len >= 8) {
            m->base = be32(val);
            m->size = be32(val + 4);
        } else {
            return 0;
        }
        m->found = 1;
        return 1;
    }
    return 0;
}

/*
 * Harts: nodes /cpus/cpu@<id> (or /cpus/cpu) with device_type = "cpu",
 * counted once each through that property. Nodes such as /cpus/cpu-map do
 * not match. A cpu with status = "disabled" is counted all the same: it
 * still exists and receives the start-up jump on QEMU's virt.
 */
static int count_cpus(void *ctx, int depth, const char *parent,
                      const char *node, const char *name,
                      const uint8_t *val, uint32_t len)
{
    uint32_t *n = ctx;
    if (depth == 3 && hf_strcmp(parent, "cpus") == 0 &&
        hf_strncmp(node, "cpu", 3) == 0 &&
        (node[3] == '@' || node[3] == '\0') &&
        hf_strcmp(name, "device_type") == 0 && len == 4 &&
        hf_strncmp((const char *)val, "cpu", 4) == 0)
        (*n)++;
    return 0;
}

static int fdt_ok;
static uintptr_t mem_limit = HF_RAM_DEFAULT_END;
static uint32_t hart_count;

/* Called once from hf_sdk_init. */
void hf_fdt_scan(uintptr_t addr)
{
    struct fdt f;
    struct mem_ctx m = { 0, 0, 0 };

    fdt_ok = fdt_open(addr, &f) == 0;
    if (!fdt_ok)
        return;
    fdt_walk(&f, find_memory, &m);
    uint32_t cpus = 0;
    if (fdt_walk(&f, count_cpus, &cpus) == 0)
        hart_count = cpus;
    if (m.found && m.base == HF_RAM_BASE && m.size != 0) {
        uint64_t end = (uint64_t)m.base + m.size;
        mem_limit = end > 0xfffff000u ? 0xfffff000u : (uintptr_t)end;
    }
    if (addr < mem_limit)
        mem_limit = addr;
}

int hf_fdt_valid(void)
{
    return fdt_ok;
}

uintptr_t hf_mem_limit(void)
{
    return mem_limit;
}

uint32_t hf_fdt_hart_count(void)
{
    return hart_count;
}
