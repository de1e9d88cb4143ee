/*
 * kv.c - the key-value table and the log record codec.
 *
 * Table: KV_MAX_KEYS entries in a static pool, indexed by an
 * open-addressing hash (FNV-1a, linear probing) of twice as many slots, so
 * probes stay short even when every key is in use. Deletion shifts the
 * following run back instead of leaving tombstones, so a table that
 * churns through many keys never degrades.
 */
#include "kv.h"

#ifdef KV_NATIVE
#include <string.h>
#else
#include "hf.h"
#endif

#define SLOTS       (2u * KV_MAX_KEYS)     /* a power of two */
#define SLOT_MASK   (SLOTS - 1u)

struct entry {
    uint32_t hash;
    uint16_t vlen;
    uint8_t klen;
    uint8_t key[HF_RPC_KEY_MAX];
    uint8_t value[HF_RPC_VALUE_MAX];
};

static struct entry entries[KV_MAX_KEYS];
static uint16_t slots[SLOTS];          /* entry index + 1; 0 = empty */
static uint16_t free_list[KV_MAX_KEYS];
static uint32_t free_top;
static uint32_t used;

static uint32_t fnv1a(const uint8_t *p, uint32_t n)
{
    uint32_t h = 2166136261u;
    while (n--)
        h = (h ^ *p++) * 16777619u;
    return h;
}

void kv_init(void)
{
    memset(slots, 0, sizeof(slots));
    for (uint32_t i = 0; i < KV_MAX_KEYS; i++)
        free_list[i] = (uint16_t)(KV_MAX_KEYS - 1u - i);
    free_top = KV_MAX_KEYS;
    used = 0;
}

uint32_t kv_count(void) { return used; }

/* The slot holding key, or the empty slot where it would go (*found 0). */
static uint32_t lookup(const uint8_t *key, uint32_t klen, uint32_t h,
                       int *found)
{
    uint32_t i = h & SLOT_MASK;
    for (;;) {
        uint32_t s = slots[i];
        if (s == 0) {
            *found = 0;
            return i;
        }
        const struct entry *e = &entries[s - 1u];
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0) {
            *found = 1;
            return i;
        }
        i = (i + 1u) & SLOT_MASK;
    }
}

const uint8_t *kv_get(const uint8_t *key, uint32_t klen, uint32_t *vlen)
{
    int found;
    uint32_t i = lookup(key, klen, fnv1a(key, klen), &found);
    if (!found)
        return NULL;
    const struct entry *e = &entries[slots[i] - 1u];
    *vlen = e->vlen;
    return e->value;
}

int kv_put(const uint8_t *key, uint32_t klen, const uint8_t *val,
           uint32_t vlen)
{
    uint32_t h = fnv1a(key, klen);
    int found;
    uint32_t i = lookup(key, klen, h, &found);
    struct entry *e;
    if (found) {
        e = &entries[slots[i] - 1u];
    } else {
        if (free_top == 0)
            return -1;
        uint16_t idx = free_list[--free_top];
        e = &entries[idx];
        e->hash = h;
        e->klen = (uint8_t)klen;
        memcpy(e->key, key, klen);
        slots[i] = (uint16_t)(idx + 1u);
        used++;
    }
    if (vlen)
        memmove(e->value, val, vlen);
    e->vlen = (uint16_t)vlen;
    return 0;
}

int kv_delete(const uint8_t *key, uint32_t klen)
{
    int found;
    uint32_t i = lookup(key, klen, fnv1a(key, klen), &found);
    if (!found)
        return 0;
    free_list[free_top++] = (uint16_t)(slots[i] - 1u);
    used--;
    /* backward shift: pull later members of the run into the hole unless
     * their home slot lies cyclically in (hole, j] */
    uint32_t j = i;
    for (;;) {
        j = (j + 1u) & SLOT_MASK;
        if (slots[j] == 0)
            break;
        uint32_t home = entries[slots[j] - 1u].hash & SLOT_MASK;
        int stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (stays)
            continue;
        slots[i] = slots[j];
        i = j;
    }
    slots[i] = 0;
    return 1;
}

/* ---- CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) ------------ */

static uint32_t crc_table[256];

uint32_t kv_crc32(uint32_t crc, const uint8_t *p, uint32_t n)
{
    if (crc_table[1] == 0) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1u ? (c >> 1) ^ 0xEDB88320u : c >> 1;
            crc_table[i] = c;
        }
    }
    crc = ~crc;
    while (n--)
        crc = crc_table[(crc ^ *p++) & 0xffu] ^ (crc >> 8);
    return ~crc;
}

/* ---- records ----------------------------------------------------------- */

void kv_rec_encode(uint8_t s[KV_SECTOR], uint32_t seq, uint8_t op,
                   const uint8_t *key, uint32_t klen, const uint8_t *val,
                   uint32_t vlen)
{
    memset(s, 0, KV_SECTOR);
    kv_put_le32(s, KV_REC_MAGIC);
    kv_put_le32(s + 4, seq);
    s[8] = op;
    s[9] = 0;
    kv_put_le16(s + 10, klen);
    kv_put_le32(s + 12, vlen);
    memcpy(s + KV_REC_HEADER, key, klen);
    if (vlen)
        memcpy(s + KV_REC_HEADER + klen, val, vlen);
    uint32_t crc = kv_crc32(0, s, 16);
    crc = kv_crc32(crc, s + KV_REC_HEADER, klen + vlen);
    kv_put_le32(s + 16, crc);
}

int kv_rec_decode(const uint8_t s[KV_SECTOR], uint32_t seq, struct kv_rec *r)
{
    if (kv_get_le32(s) != KV_REC_MAGIC || kv_get_le32(s + 4) != seq)
        return 0;
    uint8_t op = s[8];
    uint32_t klen = kv_get_le16(s + 10), vlen = kv_get_le32(s + 12);
    if (klen < 1 || klen > HF_RPC_KEY_MAX || vlen > HF_RPC_VALUE_MAX)
        return 0;
    if (!(op == HF_RPC_SET || (op == HF_RPC_DELETE && vlen == 0)))
        return 0;
    uint32_t crc = kv_crc32(0, s, 16);
    crc = kv_crc32(crc, s + KV_REC_HEADER, klen + vlen);
    if (crc != kv_get_le32(s + 16))
        return 0;
    r->seq = seq;
    r->op = op;
    r->klen = klen;
    r->vlen = vlen;
    r->key = s + KV_REC_HEADER;
    r->value = s + KV_REC_HEADER + klen;
    return 1;
}

/* ---- superblock: magic[8] version boots crc (of the 16 bytes before) -- */

void kv_sb_encode(uint8_t s[KV_SECTOR], uint32_t boots)
{
    memset(s, 0, KV_SECTOR);
    memcpy(s, KV_SB_MAGIC, 8);
    kv_put_le32(s + 8, KV_SB_VERSION);
    kv_put_le32(s + 12, boots);
    kv_put_le32(s + 16, kv_crc32(0, s, 16));
}

int kv_sb_decode(const uint8_t s[KV_SECTOR], uint32_t *boots,
                 uint32_t *version)
{
    if (memcmp(s, KV_SB_MAGIC, 8) != 0)
        return -1;
    if (kv_get_le32(s + 16) != kv_crc32(0, s, 16))
        return -2;
    *version = kv_get_le32(s + 8);
    if (*version != KV_SB_VERSION)
        return -3;
    *boots = kv_get_le32(s + 12);
    return 0;
}
