/*
 * kv.h - kvserver's pieces that touch nothing but memory: the key-value
 * table, CRC-32 and the log record format (see main.c for the layout).
 */
#ifndef KVSERVER_KV_H
#define KVSERVER_KV_H

#include <stddef.h>
#include <stdint.h>
#include "hf_rpc.h"

#define KV_MAX_KEYS     4096u
#define KV_SECTOR       512u

/* ---- table ------------------------------------------------------------- */

void kv_init(void);
uint32_t kv_count(void);
/* The value of key (its length in *vlen), or NULL. */
const uint8_t *kv_get(const uint8_t *key, uint32_t klen, uint32_t *vlen);
/* Insert or replace: 0, or -1 when the key is new and the table full. */
int kv_put(const uint8_t *key, uint32_t klen, const uint8_t *val,
           uint32_t vlen);
/* 1 when the key was there (and is gone now), else 0. */
int kv_delete(const uint8_t *key, uint32_t klen);

/* ---- log records ------------------------------------------------------- */

#define KV_REC_MAGIC    0x564B4648u   /* "HFKV" as stored (little-endian) */
#define KV_REC_HEADER   20u
#define KV_SB_MAGIC     "HFKVLOG1"
#define KV_SB_VERSION   1u

uint32_t kv_crc32(uint32_t crc, const uint8_t *p, uint32_t n);

struct kv_rec {
    uint32_t seq;
    uint8_t op;             /* HF_RPC_SET or HF_RPC_DELETE */
    uint32_t klen;
    uint32_t vlen;
    const uint8_t *key;     /* into the sector */
    const uint8_t *value;
};

/* Fill a whole sector with one record (zero after it). */
void kv_rec_encode(uint8_t sector[KV_SECTOR], uint32_t seq, uint8_t op,
                   const uint8_t *key, uint32_t klen, const uint8_t *val,
                   uint32_t vlen);
/* 1 when the sector holds a valid record with sequence number `seq`. */
int kv_rec_decode(const uint8_t sector[KV_SECTOR], uint32_t seq,
                  struct kv_rec *r);

/* Superblock: 0 and *boots when valid, -1 without the magic (a fresh
 * disk), -2 bad checksum, -3 another format (*version says which). */
int kv_sb_decode(const uint8_t sector[KV_SECTOR], uint32_t *boots,
                 uint32_t *version);
void kv_sb_encode(uint8_t sector[KV_SECTOR], uint32_t boots);

static inline uint32_t kv_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static inline void kv_put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t kv_get_le16(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static inline void kv_put_le16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

#endif
