/*
 * storvsc.c - blocking disk client over an HF_CH_STORAGE channel.
 *
 * One request at a time: send it with a fresh transaction id, then read
 * replies until the one with that id and type (request | HF_PKT_REPLY)
 * turns up; anything else on the channel is a stale reply and is dropped.
 * Other channels are not serviced meanwhile, but their event bits stay
 * pending (hf_vmbus_wait_for) for the program's next hf_vmbus_wait.
 */
#include "hf.h"
#include "hf_vmbus_client.h"

#define REPLY_TIMEOUT  (60ull * HF_MTIME_HZ)
/* the host may set the flag without us seeing it: look every ~10 ms */
#define REPOLL_TICKS   (HF_MTIME_HZ / 100u)



/* {u64 offset; u32 length}: the head of READ and WRITE */
static void io_head(uint8_t h[12], uint64_t offset, uint32_t len)
{
    hf_put_le32(h, (uint32_t)offset);
    hf_put_le32(h + 4, (uint32_t)(offset >> 32));
    hf_put_le32(h + 8, len);
}

/* Send a request and wait for its reply, whose payload is spread over
 * buf1/buf2 (see hf_ring_get). Returns 0 with *rep filled, or < 0. */
static int transact(struct hf_storvsc *d, uint16_t type, const void *head,
                    uint32_t head_len, const void *data, uint32_t data_len,
                    struct hf_packet *rep, void *buf1, uint32_t cap1,
                    void *buf2, uint32_t cap2)
{
    uint64_t txid = d->next_txid++;
    uint64_t deadline = hf_mtime() + REPLY_TIMEOUT;
    int rc = hf_vmbus_send_wait(&d->ch, type, txid, head, head_len, data,
                                data_len, deadline);
    if (rc)
        return rc;

    for (;;) {
        struct hf_packet p;
        rc = hf_vmbus_peek(&d->ch, &p);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            int mine = hf_packet_txid(&p) == txid &&
                       p.type == (HF_PKT_REPLY | type);
            rc = mine ? hf_vmbus_recv(&d->ch, rep, buf1, cap1, buf2, cap2)
                      : hf_vmbus_recv(&d->ch, &p, NULL, 0, NULL, 0);
            if (rc < 0)
                return rc;
            if (mine)
                return 0;
            continue;
        }
        uint64_t now = hf_mtime();
        if (now >= deadline)
            return HF_VMBUS_ETIMEDOUT;
        uint64_t wake = now + REPOLL_TICKS;
        hf_vmbus_wait_for(1u << d->ch.id, wake < deadline ? wake : deadline);
    }
}

int hf_storvsc_open(struct hf_storvsc *d, uint32_t instance, void *ring,
                    uint32_t pages)
{
    memset(d, 0, sizeof(*d));
    const struct hf_offer *o = hf_vmbus_find(HF_CH_STORAGE, instance);
    if (!o)
        return HF_VMBUS_ENOCHANNEL;
    int rc = hf_vmbus_open(&d->ch, o, ring, pages);
    if (rc)
        return rc;
    d->next_txid = 1;

    /* WRITE carries 12 bytes before the data, a READ reply 4 */
    uint32_t n = HF_STORAGE_MAX_IO;
    while (n && (hf_ring_packet_bytes(12u + n) > d->ch.tx.size - 8u ||
                 hf_ring_packet_bytes(4u + n) > d->ch.rx.size - 8u))
        n -= HF_SECTOR;
    d->max_io = n;
    return n ? 0 : HF_VMBUS_ETOOBIG;
}

int hf_storvsc_info(struct hf_storvsc *d, uint64_t *size, uint32_t *sector)
{
    uint8_t r[16];
    struct hf_packet rep;
    int rc = transact(d, HF_STORAGE_INFO, NULL, 0, NULL, 0, &rep, r,
                      sizeof(r), NULL, 0);
    if (rc)
        return rc;
    if (rep.length < 4)
        return HF_VMBUS_EPROTO;
    int32_t status = (int32_t)hf_get_le32(r);
    if (status)
        return status;
    if (rep.length < 16)
        return HF_VMBUS_EPROTO;
    d->sector = hf_get_le32(r + 4);
    d->size = (uint64_t)hf_get_le32(r + 8) | (uint64_t)hf_get_le32(r + 12) << 32;
    if (size)
        *size = d->size;
    if (sector)
        *sector = d->sector;
    return 0;
}

static int check_io(const struct hf_storvsc *d, uint64_t offset, uint32_t len)
{
    if (!d->ch.open)
        return HF_VMBUS_ENOCHANNEL;
    if ((offset % HF_SECTOR) || (len % HF_SECTOR))
        return HF_EINVAL;
    return 0;
}

/* READ (into `out`) or WRITE (from `in`) of `len` bytes, in requests of at
 * most max_io; the other buffer is NULL. */
static int transfer(struct hf_storvsc *d, uint16_t op, uint64_t offset,
                    const uint8_t *in, uint8_t *out, uint32_t len)
{
    int rc = check_io(d, offset, len);
    if (rc)
        return rc;
    while (len) {
        uint32_t n = len < d->max_io ? len : d->max_io;
        uint8_t head[12], st[4];
        struct hf_packet rep;
        io_head(head, offset, n);
        rc = transact(d, op, head, sizeof(head), in, in ? n : 0, &rep, st,
                      sizeof(st), out, out ? n : 0);
        if (rc)
            return rc;
        if (rep.length < 4)
            return HF_VMBUS_EPROTO;
        int32_t status = (int32_t)hf_get_le32(st);
        if (status)
            return status;
        if (out && rep.length != 4u + n)
            return HF_VMBUS_EPROTO;
        if (in)
            in += n;
        if (out)
            out += n;
        offset += n;
        len -= n;
    }
    return 0;
}

int hf_storvsc_read(struct hf_storvsc *d, uint64_t offset, void *buf,
                    uint32_t len)
{
    return transfer(d, HF_STORAGE_READ, offset, NULL, buf, len);
}

int hf_storvsc_write(struct hf_storvsc *d, uint64_t offset, const void *buf,
                     uint32_t len)
{
    return transfer(d, HF_STORAGE_WRITE, offset, buf, NULL, len);
}

int hf_storvsc_flush(struct hf_storvsc *d)
{
    if (!d->ch.open)
        return HF_VMBUS_ENOCHANNEL;
    uint8_t st[4];
    struct hf_packet rep;
    int rc = transact(d, HF_STORAGE_FLUSH, NULL, 0, NULL, 0, &rep, st,
                      sizeof(st), NULL, 0);
    if (rc)
        return rc;
    if (rep.length < 4)
        return HF_VMBUS_EPROTO;
    return (int32_t)hf_get_le32(st);
}
