/*
 * hf_vmbus_client.h - the SDK's VMBus client: hypercalls, rings, events
 * (vmbus.c), a blocking disk client (storvsc.c) and the integration
 * services (ic.c). The ABI itself is hf_vmbus.h.
 *
 * Everything runs on hart 0 in M-mode with mstatus.MIE = 0: the VMBus
 * interrupt only wakes WFI (mie.MEIE = 1), it is never taken, so none of
 * this code has to be re-entrant.
 *
 * Return values: 0 (or a count) on success, else a negative code: the
 * host's HF_SBI_ERR_* from a hypercall, a device status (HF_EIO,
 * HF_EINVAL) or one of the HF_VMBUS_E* below. The HF_VMBUS_E* values are
 * the SDK's own and never appear on the wire.
 */
#ifndef HF_VMBUS_CLIENT_H
#define HF_VMBUS_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include "hf_vmbus.h"

#define HF_VMBUS_EFULL      (-100) /* no room in the ring now: retry later */
#define HF_VMBUS_ETOOBIG    (-101) /* the packet could never fit the ring */
#define HF_VMBUS_ECORRUPT   (-102) /* ring indices or a packet out of range */
#define HF_VMBUS_ENOCHANNEL (-103) /* no such offer, or channel not open */
#define HF_VMBUS_ETIMEDOUT  (-104) /* no reply before the deadline */
#define HF_VMBUS_EPROTO     (-105) /* a reply of the wrong shape */

#define HF_PAGE_SIZE        4096u

/* ---- rings (pure memory code: also builds natively) -------------------- */

/* One direction: its header page and data area. */
struct hf_ring {
    struct hf_ring_header *hdr;
    uint8_t *data;
    uint32_t size;          /* data bytes: a multiple of 8 */
};

/* Bytes a packet with `payload` bytes of payload takes in a ring. */
static inline uint32_t hf_ring_packet_bytes(uint32_t payload)
{
    return HF_PACKET_HEADER_BYTES + ((payload + 7u) & ~7u);
}

/* Zero a half of `half_bytes` (header page + data pages) and set its
 * data_size: the initialiser's job before OPEN. */
void hf_ring_init(struct hf_ring *r, void *half, uint32_t half_bytes);
/* Use a half that someone else initialised (data_size is trusted only if
 * it fits the half and is a multiple of 8). Returns 0 or ECORRUPT. */
int hf_ring_attach(struct hf_ring *r, void *half, uint32_t half_bytes);
/* Bytes waiting to be read, and bytes a writer may still fill. */
uint32_t hf_ring_used(const struct hf_ring *r);
uint32_t hf_ring_free(const struct hf_ring *r);
/*
 * Writer: one packet whose payload is head[0..head_len) followed by
 * data[0..data_len) (either may be empty), `length` = their sum, padding
 * zeroed. Fence, then the write index. Does not signal. Returns 0, EFULL,
 * ETOOBIG or ECORRUPT.
 */
int hf_ring_put(struct hf_ring *r, uint16_t type, uint16_t flags,
                uint64_t txid, const void *head, uint32_t head_len,
                const void *data, uint32_t data_len);
/* Reader: copy the next packet's header out without consuming it.
 * Returns 1, 0 when empty, or ECORRUPT. */
int hf_ring_peek(struct hf_ring *r, struct hf_packet *pkt);
/*
 * Reader: consume the next packet. Its header goes to *pkt (`length` is
 * the real payload length); the payload fills buf1 (cap1 bytes), then
 * buf2 (cap2 bytes); bytes beyond cap1 + cap2 are dropped. Either buffer
 * may be NULL with a cap of 0. Fence, then the read index. Returns 1, 0
 * when empty, or ECORRUPT.
 */
int hf_ring_get(struct hf_ring *r, struct hf_packet *pkt, void *buf1,
                uint32_t cap1, void *buf2, uint32_t cap2);

static inline uint64_t hf_packet_txid(const struct hf_packet *p)
{
    return ((uint64_t)p->txid_hi << 32) | p->txid_lo;
}

/* ---- hypercalls, offers, channels, events (vmbus.c) -------------------- */

/* One call through the hypercall page (ARG3..5 are stored as 0). Returns
 * ERROR; VALUE goes to *value when value is not NULL. */
int32_t hf_hvcall(uint32_t code, uint32_t a0, uint32_t a1, uint32_t a2,
                  uint32_t *value);

/* Connect the event flags page, route PLIC source HF_VMBUS_IRQ to hart 0
 * M-mode (priority 1, threshold 0), set mie.MEIE, clear mstatus.MIE. */
int hf_vmbus_init(void);
/* Ask for the offers and keep up to HF_VMBUS_MAX_CHANNELS - 1 of them.
 * Returns how many the host has (it may exceed what is kept), or < 0. */
int hf_vmbus_query(void);
uint32_t hf_vmbus_offer_count(void);       /* kept */
const struct hf_offer *hf_vmbus_offer(uint32_t i);
const struct hf_offer *hf_vmbus_find(uint32_t type, uint32_t instance);

struct hf_vmbus_channel {
    uint32_t id;            /* 1..31 */
    uint32_t type;
    uint32_t instance;
    uint32_t param;
    struct hf_ring tx;      /* guest to host: the first half */
    struct hf_ring rx;      /* host to guest: the second half */
    int open;
};

/*
 * Open the channel of offer `o` on `ring`: `pages` 4 KiB pages (even,
 * 4..256), 4 KiB aligned, owned by the channel until it is closed. Both
 * halves are zeroed and their data_size set before the OPEN call.
 */
int hf_vmbus_open(struct hf_vmbus_channel *ch, const struct hf_offer *o,
                  void *ring, uint32_t pages);
int hf_vmbus_close(struct hf_vmbus_channel *ch);
int hf_vmbus_signal(const struct hf_vmbus_channel *ch);
/*
 * Non-blocking send of one packet (payload = head then data). Signals the
 * host afterwards unless the guest-to-host ring header's interrupt_mask
 * (set by the host, that ring's reader) is non-zero. EFULL when it does
 * not fit now.
 */
int hf_vmbus_send(struct hf_vmbus_channel *ch, uint16_t type, uint64_t txid,
                  const void *head, uint32_t head_len, const void *data,
                  uint32_t data_len);
/* The same, waiting for room until mtime reaches `until` (ETIMEDOUT). */
int hf_vmbus_send_wait(struct hf_vmbus_channel *ch, uint16_t type,
                       uint64_t txid, const void *head, uint32_t head_len,
                       const void *data, uint32_t data_len, uint64_t until);
/* hf_ring_peek / hf_ring_get on the host-to-guest ring; a consumed packet
 * is followed by a SIGNAL (the host may be waiting for room). */
int hf_vmbus_peek(struct hf_vmbus_channel *ch, struct hf_packet *pkt);
int hf_vmbus_recv(struct hf_vmbus_channel *ch, struct hf_packet *pkt,
                  void *buf1, uint32_t cap1, void *buf2, uint32_t cap2);
/* 1 once the host has read everything the guest sent on ch. */
int hf_vmbus_tx_idle(const struct hf_vmbus_channel *ch);

/*
 * Sleep in WFI (mie.MEIE and mie.MTIE, mstatus.MIE = 0) until the VMBus
 * interrupt or mtime >= until_mtime (0: do not sleep, just collect). Then
 * claim/complete the PLIC and take the event flags with amoswap. Returns
 * the channel bitmask (bit c: channel c has news), including bits set
 * aside earlier by hf_vmbus_wait_for; the SDK's pending mask is emptied.
 */
uint32_t hf_vmbus_wait(uint64_t until_mtime);
/*
 * Like hf_vmbus_wait but only for the channels in `mask`: returns as soon
 * as one of them has news (or at the deadline) and leaves the other bits
 * pending for the next hf_vmbus_wait, so no event is lost.
 */
uint32_t hf_vmbus_wait_for(uint32_t mask, uint64_t until_mtime);

/* ---- storage client (storvsc.c) ---------------------------------------- */

struct hf_storvsc {
    struct hf_vmbus_channel ch;
    uint64_t next_txid;
    uint32_t max_io;        /* bytes per request: what the rings can carry */
    uint32_t sector;        /* from INFO (0 before) */
    uint64_t size;          /* bytes, from INFO */
};

/* Open storage instance `instance` (its n-th disk). max_io becomes the
 * largest multiple of HF_SECTOR, at most HF_STORAGE_MAX_IO, whose READ
 * reply and WRITE request each fit their ring. */
int hf_storvsc_open(struct hf_storvsc *d, uint32_t instance, void *ring,
                    uint32_t pages);
/* All calls block until the reply (ETIMEDOUT after a minute of mtime);
 * they return 0 or the first non-zero status. offset and len must be
 * multiples of HF_SECTOR; longer transfers are split into max_io pieces. */
int hf_storvsc_info(struct hf_storvsc *d, uint64_t *size, uint32_t *sector);
int hf_storvsc_read(struct hf_storvsc *d, uint64_t offset, void *buf,
                    uint32_t len);
int hf_storvsc_write(struct hf_storvsc *d, uint64_t offset, const void *buf,
                     uint32_t len);
int hf_storvsc_flush(struct hf_storvsc *d);

/* ---- integration services (ic.c) --------------------------------------- */

#define HF_KVP_MAX_KEYS   32
#define HF_KVP_KEY_MAX    64      /* bytes with the NUL */
#define HF_KVP_VALUE_MAX  256     /* bytes with the NUL */
#define HF_IC_MAX_PAYLOAD 1024    /* longer IC packets are dropped */

struct hf_ic_handlers {
    /* SHUTDOWN: the ACK status to send (0 accepts); NULL accepts and
     * prints "shutdown: <reason>". */
    int32_t (*shutdown)(uint32_t flags, const char *reason);
    /* TIME, after the clock was set; stepped = flags bit 0. */
    void (*time)(uint64_t unix_ns, int stepped);
    /* SET, after the value was stored. */
    void (*kvp_set)(const char *key, const char *value);
};

/* Open the instance-0 channel of an IC type (HF_CH_HEARTBEAT,
 * HF_CH_SHUTDOWN, HF_CH_TIMESYNC or HF_CH_KVP). */
int hf_ic_open(uint32_t type, void *ring, uint32_t pages);
int hf_ic_is_open(uint32_t type);
void hf_ic_set_handlers(const struct hf_ic_handlers *h);
/* Drain every open IC channel: PING -> PONG (health 0), SHUTDOWN ->
 * handler + ACK, TIME -> clock, SET -> table, DELETE -> out of the table,
 * GET -> VALUE. Returns the
 * number of packets handled. */
int hf_ic_poll(void);
/* 1 once a SHUTDOWN was acknowledged with status 0. */
int hf_ic_shutdown_accepted(void);
/* 1 once every open IC channel's guest-to-host ring has been read. */
int hf_ic_tx_idle(void);
/* Host time: unix ns now (mtime plus the last TIME's offset); 0 before
 * the first TIME. */
int hf_ic_time_valid(void);
uint64_t hf_ic_unix_ns(void);
/* A host-set value, or NULL. */
const char *hf_ic_kvp_value(const char *key);
/* Guest keys: recorded here (GET answers them after host-set keys) and
 * sent to the host. Keys below HF_KVP_KEY_MAX, values below
 * HF_KVP_VALUE_MAX bytes. */
int hf_ic_kvp_publish(const char *key, const char *value);
int hf_ic_kvp_delete(const char *key);

/* Poll the ICs; once a shutdown was accepted, give the host up to
 * drain_ticks to read the ACK, then power off with success. */
void hf_ic_service(uint64_t drain_ticks);
/* Says on the console why a channel did not open, if it did not
 * ("<prog>: no <name> channel", "<prog>: open <name> failed <rc>");
 * returns rc. */
int hf_vmbus_report(const char *prog, const char *name, int rc);
/* Opens the heartbeat, shutdown, time sync and KVP channels on four
 * consecutive ring areas of `pages` pages each, reporting failures. */
void hf_ic_open_all(const char *prog, void *rings, uint32_t pages);

/* ---- little-endian packet fields --------------------------------------- */
static inline uint32_t hf_get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static inline void hf_put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint64_t hf_get_le64(const uint8_t *p)
{
    return (uint64_t)hf_get_le32(p) | (uint64_t)hf_get_le32(p + 4) << 32;
}

#endif /* HF_VMBUS_CLIENT_H */

/* ---- network (netvsc.c) ------------------------------------------------ */

/*
 * The synthetic NIC: FRAME packets both ways, each one frame
 * dst[6] src[6] ethertype[2] data (hf_vmbus.h, HF_CH_NETWORK).
 * HF_NETVSC_RING_PAGES (16: 7 data pages per direction) holds about 18
 * full frames each way. The host holds frames for a full receive ring and
 * drops the oldest beyond about 1000, so a program calls hf_netvsc_recv
 * until it returns 0 whenever the channel has news.
 */
#define HF_NETVSC_RING_PAGES 16u
#define HF_NET_HEADER_BYTES  14u
#define HF_NET_FRAME_MAX     (HF_NET_MTU + HF_NET_HEADER_BYTES)

struct hf_netvsc {
    struct hf_vmbus_channel ch;
    uint64_t next_txid;
    uint8_t mac[6];
    uint32_t rx_freed;      /* receive ring bytes freed, not yet signalled */
    uint32_t rx_dropped;    /* packets skipped: not a frame, or too long */
};

/* Open NIC instance `instance` on `ring` (`pages` 4 KiB pages, even,
 * 4..256, 4 KiB aligned; ETOOBIG when a full frame would not fit). */
int hf_netvsc_open(struct hf_netvsc *n, uint32_t instance, void *ring,
                   uint32_t pages);
/* The NIC's MAC: 02:48 and the offer's param, most significant first. */
const uint8_t *hf_netvsc_mac(const struct hf_netvsc *n);
/* "02:48:xx:xx:xx:xx", lowercase, NUL-terminated. */
void hf_netvsc_mac_string(const uint8_t mac[6], char out[18]);
/*
 * Non-blocking send of one frame (14..HF_NET_FRAME_MAX bytes, else
 * ETOOBIG): 0, EFULL when the ring has no room now, ENOCHANNEL. The
 * host drops frames whose source is not this NIC's MAC. send2 sends
 * head then data as one frame (no copy into a staging buffer).
 */
int hf_netvsc_send(struct hf_netvsc *n, const void *frame, uint32_t len);
int hf_netvsc_send2(struct hf_netvsc *n, const void *head, uint32_t head_len,
                    const void *data, uint32_t data_len);
/* The same, waiting for room until mtime reaches `until` (ETIMEDOUT). */
int hf_netvsc_send_wait(struct hf_netvsc *n, const void *frame, uint32_t len,
                        uint64_t until);
int hf_netvsc_send2_wait(struct hf_netvsc *n, const void *head,
                         uint32_t head_len, const void *data,
                         uint32_t data_len, uint64_t until);
/*
 * Non-blocking receive: the next frame's length (> 0) with its bytes in
 * buf, 0 when none is waiting, or < 0 (ECORRUPT, ENOCHANNEL). Packets
 * that are not frames, or longer than cap, are skipped (rx_dropped).
 * Freed room is signalled to the host at the latest when 0 is returned.
 */
int hf_netvsc_recv(struct hf_netvsc *n, void *buf, uint32_t cap);
