/*
 * vmbus.c - VMBus client core: rings, hypercalls, offers, channels and
 * event waiting (ABI: hf_vmbus.h, API: hf_vmbus_client.h).
 *
 * The ring code touches nothing but memory, so it also builds for the
 * build machine with -DHF_VMBUS_NATIVE, which leaves out what needs the
 * machine (hypercall page, PLIC, event page, WFI: hf_hvcall,
 * hf_vmbus_init, hf_vmbus_wait*) for a simulated host to supply; that is
 * how the rings and the channel layer are exercised outside a VM.
 *
 * Index discipline: a side never trusts the other side's index. Both are
 * checked (below data_size, multiple of 8) before use and a packet header
 * must describe bytes that are really there; anything else is ECORRUPT and
 * leaves the indices alone.
 */
#include "hf_vmbus_client.h"

#include "hf.h"

#ifdef HF_VMBUS_NATIVE
#include <string.h>
#define ring_fence() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#else
/* orders the ring's data bytes against its indices (the host is another
 * thread of the machine, so this is a real memory-ordering point) */
#define ring_fence() __asm__ volatile ("fence rw, rw" : : : "memory")
#endif

/* ---- rings ------------------------------------------------------------- */

static int index_ok(const struct hf_ring *r, uint32_t i)
{
    return i < r->size && (i & 7u) == 0;
}

static int ring_ok(const struct hf_ring *r)
{
    return r->size >= 2u * HF_PACKET_HEADER_BYTES && (r->size & 7u) == 0;
}

static uint32_t used_bytes(const struct hf_ring *r, uint32_t w, uint32_t rd)
{
    return w >= rd ? w - rd : r->size - rd + w;
}

/* Copy n bytes (n <= size) into the data area at off; returns the offset
 * after them. */
static uint32_t copy_in(struct hf_ring *r, uint32_t off, const void *src,
                        uint32_t n)
{
    uint32_t first = r->size - off;
    if (first > n)
        first = n;
    if (first)
        memcpy(r->data + off, src, first);
    if (n > first)
        memcpy(r->data, (const uint8_t *)src + first, n - first);
    off += n;
    return off >= r->size ? off - r->size : off;
}

/* Copy n bytes out of the data area at off (dst NULL: skip them). */
static uint32_t copy_out(const struct hf_ring *r, uint32_t off, void *dst,
                         uint32_t n)
{
    uint32_t first = r->size - off;
    if (first > n)
        first = n;
    if (dst) {
        if (first)
            memcpy(dst, r->data + off, first);
        if (n > first)
            memcpy((uint8_t *)dst + first, r->data, n - first);
    }
    off += n;
    return off >= r->size ? off - r->size : off;
}

void hf_ring_init(struct hf_ring *r, void *half, uint32_t half_bytes)
{
    memset(half, 0, half_bytes);
    r->hdr = (struct hf_ring_header *)half;
    r->data = (uint8_t *)half + HF_RING_HEADER_BYTES;
    r->size = half_bytes - HF_RING_HEADER_BYTES;
    r->hdr->data_size = r->size;
}

int hf_ring_attach(struct hf_ring *r, void *half, uint32_t half_bytes)
{
    r->hdr = (struct hf_ring_header *)half;
    r->data = (uint8_t *)half + HF_RING_HEADER_BYTES;
    r->size = r->hdr->data_size;
    if (half_bytes < HF_RING_HEADER_BYTES ||
        r->size > half_bytes - HF_RING_HEADER_BYTES || !ring_ok(r)) {
        r->size = 0;
        return HF_VMBUS_ECORRUPT;
    }
    return 0;
}

uint32_t hf_ring_used(const struct hf_ring *r)
{
    uint32_t w = r->hdr->write_index, rd = r->hdr->read_index;
    if (!ring_ok(r) || !index_ok(r, w) || !index_ok(r, rd))
        return 0;
    return used_bytes(r, w, rd);
}

uint32_t hf_ring_free(const struct hf_ring *r)
{
    uint32_t w = r->hdr->write_index, rd = r->hdr->read_index;
    if (!ring_ok(r) || !index_ok(r, w) || !index_ok(r, rd))
        return 0;
    /* the last 8 bytes stay empty so that full and empty differ */
    return r->size - 8u - used_bytes(r, w, rd);
}

int hf_ring_put(struct hf_ring *r, uint16_t type, uint16_t flags,
                uint64_t txid, const void *head, uint32_t head_len,
                const void *data, uint32_t data_len)
{
    static const uint8_t zeros[8];

    if (!ring_ok(r))
        return HF_VMBUS_ECORRUPT;
    if (head_len > r->size || data_len > r->size ||
        hf_ring_packet_bytes(head_len + data_len) > r->size - 8u)
        return HF_VMBUS_ETOOBIG;

    uint32_t len = head_len + data_len;
    uint32_t total = hf_ring_packet_bytes(len);
    uint32_t w = r->hdr->write_index;
    uint32_t rd = r->hdr->read_index;
    if (!index_ok(r, w) || !index_ok(r, rd))
        return HF_VMBUS_ECORRUPT;
    /* the reader's index is read before the bytes it freed are reused */
    ring_fence();
    if (total > r->size - 8u - used_bytes(r, w, rd))
        return HF_VMBUS_EFULL;

    struct hf_packet p;
    p.length = len;
    p.type = type;
    p.flags = flags;
    p.txid_lo = (uint32_t)txid;
    p.txid_hi = (uint32_t)(txid >> 32);
    w = copy_in(r, w, &p, sizeof(p));
    w = copy_in(r, w, head, head_len);
    w = copy_in(r, w, data, data_len);
    w = copy_in(r, w, zeros, total - HF_PACKET_HEADER_BYTES - len);

    ring_fence();   /* the whole packet is visible before the index */
    r->hdr->write_index = w;
    return 0;
}

/* Validate the packet at the read index; fills *pkt. 1, 0 or ECORRUPT. */
static int next_packet(struct hf_ring *r, struct hf_packet *pkt,
                       uint32_t *rd_out, uint32_t *used_out)
{
    if (!ring_ok(r))
        return HF_VMBUS_ECORRUPT;
    uint32_t w = r->hdr->write_index;
    uint32_t rd = r->hdr->read_index;
    if (!index_ok(r, w) || !index_ok(r, rd))
        return HF_VMBUS_ECORRUPT;
    if (w == rd)
        return 0;
    /* the writer's index is read before the bytes it published */
    ring_fence();
    uint32_t used = used_bytes(r, w, rd);
    if (used < HF_PACKET_HEADER_BYTES)
        return HF_VMBUS_ECORRUPT;
    copy_out(r, rd, pkt, sizeof(*pkt));
    if (pkt->length > used - HF_PACKET_HEADER_BYTES ||
        hf_ring_packet_bytes(pkt->length) > used)
        return HF_VMBUS_ECORRUPT;
    *rd_out = rd;
    *used_out = used;
    return 1;
}

int hf_ring_peek(struct hf_ring *r, struct hf_packet *pkt)
{
    uint32_t rd, used;
    return next_packet(r, pkt, &rd, &used);
}

int hf_ring_get(struct hf_ring *r, struct hf_packet *pkt, void *buf1,
                uint32_t cap1, void *buf2, uint32_t cap2)
{
    uint32_t rd, used;
    int rc = next_packet(r, pkt, &rd, &used);
    if (rc <= 0)
        return rc;

    uint32_t left = pkt->length;
    uint32_t n1 = left < cap1 ? left : cap1;
    uint32_t off = copy_out(r, rd, NULL, HF_PACKET_HEADER_BYTES);
    off = copy_out(r, off, buf1, n1);
    left -= n1;
    uint32_t n2 = left < cap2 ? left : cap2;
    copy_out(r, off, buf2, n2);

    uint32_t total = hf_ring_packet_bytes(pkt->length);
    uint32_t next = rd + total;
    if (next >= r->size)
        next -= r->size;
    ring_fence();   /* done with the bytes before handing them back */
    r->hdr->read_index = next;
    return 1;
}

#ifndef HF_VMBUS_NATIVE

/* ---- hypercalls -------------------------------------------------------- */

int32_t hf_hvcall(uint32_t code, uint32_t a0, uint32_t a1, uint32_t a2,
                  uint32_t *value)
{
    hf_mmio_write32(HF_HVCALL_ARG(0), a0);
    hf_mmio_write32(HF_HVCALL_ARG(1), a1);
    hf_mmio_write32(HF_HVCALL_ARG(2), a2);
    hf_mmio_write32(HF_HVCALL_ARG(3), 0);
    hf_mmio_write32(HF_HVCALL_ARG(4), 0);
    hf_mmio_write32(HF_HVCALL_ARG(5), 0);
    /* rings, offers buffer and arguments all settled before the call */
    hf_fence();
    hf_mmio_write32(HF_HVCALL_CODE, code);
    hf_fence();
    int32_t err = (int32_t)hf_mmio_read32(HF_HVCALL_ERROR);
    uint32_t val = hf_mmio_read32(HF_HVCALL_VALUE);
    /* what the host wrote into guest memory is read only after this */
    hf_fence();
    if (value)
        *value = val;
    return err;
}

/* ---- event flags and the PLIC ------------------------------------------ */

#define PLIC_PRIORITY(s)  (HF_PLIC_BASE + 4u * (s))
#define PLIC_ENABLE0      (HF_PLIC_BASE + 0x2000u)
#define PLIC_THRESHOLD0   (HF_PLIC_BASE + 0x200000u)
#define PLIC_CLAIM0       (HF_PLIC_BASE + 0x200004u)

/* bit c of the first word: channel c (channels are below 32) */
static volatile uint32_t event_page[HF_PAGE_SIZE / 4]
    __attribute__((aligned(HF_PAGE_SIZE)));
/* taken from the page but not yet handed out (see hf_vmbus_wait_for) */
static uint32_t pending_events;

int hf_vmbus_init(void)
{
    hf_mmio_write32(PLIC_PRIORITY(HF_VMBUS_IRQ), 1);
    uintptr_t en = PLIC_ENABLE0 + 4u * (HF_VMBUS_IRQ / 32u);
    hf_mmio_write32(en, hf_mmio_read32(en) | (1u << (HF_VMBUS_IRQ % 32u)));
    hf_mmio_write32(PLIC_THRESHOLD0, 0);

    /* the interrupt wakes WFI; it is never taken */
    hf_csr_clear(mstatus, MSTATUS_MIE);
    hf_csr_set(mie, MIP_MEIP);

    pending_events = 0;
    event_page[0] = 0;
    return hf_hvcall(HF_HVCALL_CONNECT, (uint32_t)(uintptr_t)event_page, 0, 0,
                     NULL);
}

#endif /* !HF_VMBUS_NATIVE */

/* ---- offers ------------------------------------------------------------ */

static struct hf_offer offers[HF_VMBUS_MAX_CHANNELS - 1];
static uint32_t offers_kept;

int hf_vmbus_query(void)
{
    uint32_t count = 0;
    int32_t err = hf_hvcall(HF_HVCALL_QUERY, (uint32_t)(uintptr_t)offers,
                            (uint32_t)sizeof(offers), 0, &count);
    if (err) {
        offers_kept = 0;
        return err;
    }
    offers_kept = count < HF_VMBUS_MAX_CHANNELS - 1 ? count
                                                    : HF_VMBUS_MAX_CHANNELS - 1;
    return (int)count;
}

uint32_t hf_vmbus_offer_count(void) { return offers_kept; }

const struct hf_offer *hf_vmbus_offer(uint32_t i)
{
    return i < offers_kept ? &offers[i] : NULL;
}

const struct hf_offer *hf_vmbus_find(uint32_t type, uint32_t instance)
{
    for (uint32_t i = 0; i < offers_kept; i++)
        if (offers[i].type == type && offers[i].instance == instance)
            return &offers[i];
    return NULL;
}

/* ---- channels ---------------------------------------------------------- */

int hf_vmbus_open(struct hf_vmbus_channel *ch, const struct hf_offer *o,
                  void *ring, uint32_t pages)
{
    if (!o)
        return HF_VMBUS_ENOCHANNEL;
    if (ch->open)
        return HF_SBI_ERR_ALREADY_STARTED;
    if (o->channel == 0 || o->channel >= HF_VMBUS_MAX_CHANNELS ||
        pages < 4 || pages > 256 || (pages & 1u) ||
        ((uintptr_t)ring & (HF_PAGE_SIZE - 1)))
        return HF_SBI_ERR_INVALID_PARAM;

    uint32_t half = pages / 2u * HF_PAGE_SIZE;
    ch->id = o->channel;
    ch->type = o->type;
    ch->instance = o->instance;
    ch->param = o->param;
    hf_ring_init(&ch->tx, ring, half);
    hf_ring_init(&ch->rx, (uint8_t *)ring + half, half);
    int32_t err = hf_hvcall(HF_HVCALL_OPEN, ch->id,
                            (uint32_t)(uintptr_t)ring, pages, NULL);
    ch->open = err == 0;
    return err;
}

int hf_vmbus_close(struct hf_vmbus_channel *ch)
{
    if (!ch->open)
        return HF_SBI_ERR_ALREADY_STOPPED;
    int32_t err = hf_hvcall(HF_HVCALL_CLOSE, ch->id, 0, 0, NULL);
    if (err == 0 || err == HF_SBI_ERR_ALREADY_STOPPED)
        ch->open = 0;
    return err;
}

int hf_vmbus_signal(const struct hf_vmbus_channel *ch)
{
    return hf_hvcall(HF_HVCALL_SIGNAL, ch->id, 0, 0, NULL);
}

int hf_vmbus_send(struct hf_vmbus_channel *ch, uint16_t type, uint64_t txid,
                  const void *head, uint32_t head_len, const void *data,
                  uint32_t data_len)
{
    if (!ch->open)
        return HF_VMBUS_ENOCHANNEL;
    int rc = hf_ring_put(&ch->tx, type, 0, txid, head, head_len, data,
                         data_len);
    if (rc)
        return rc;
    /*
     * The host reads this ring and sets its header's mask while it polls.
     * The mask is read only after the write index is out: a host that
     * clears the mask and then looks at the index again cannot miss the
     * packet, and one that still has the mask set will find it polling.
     */
    ring_fence();
    if (ch->tx.hdr->interrupt_mask == 0)
        hf_vmbus_signal(ch);
    return 0;
}

int hf_vmbus_send_wait(struct hf_vmbus_channel *ch, uint16_t type,
                       uint64_t txid, const void *head, uint32_t head_len,
                       const void *data, uint32_t data_len, uint64_t until)
{
    for (;;) {
        int rc = hf_vmbus_send(ch, type, txid, head, head_len, data, data_len);
        if (rc != HF_VMBUS_EFULL)
            return rc;
        uint64_t now = hf_mtime();
        if (now >= until)
            return HF_VMBUS_ETIMEDOUT;
        /* the host need not announce room: look again every ~1 ms */
        uint64_t wake = now + HF_MTIME_HZ / 1000u;
        hf_vmbus_wait_for(1u << ch->id, wake < until ? wake : until);
    }
}

int hf_vmbus_peek(struct hf_vmbus_channel *ch, struct hf_packet *pkt)
{
    if (!ch->open)
        return HF_VMBUS_ENOCHANNEL;
    return hf_ring_peek(&ch->rx, pkt);
}

int hf_vmbus_recv(struct hf_vmbus_channel *ch, struct hf_packet *pkt,
                  void *buf1, uint32_t cap1, void *buf2, uint32_t cap2)
{
    if (!ch->open)
        return HF_VMBUS_ENOCHANNEL;
    int rc = hf_ring_get(&ch->rx, pkt, buf1, cap1, buf2, cap2);
    /* a host that found this ring full may be waiting for the room */
    if (rc == 1)
        hf_vmbus_signal(ch);
    return rc;
}

int hf_vmbus_tx_idle(const struct hf_vmbus_channel *ch)
{
    return !ch->open || hf_ring_used(&ch->tx) == 0;
}

#ifndef HF_VMBUS_NATIVE

/* ---- waiting ----------------------------------------------------------- */

static void collect_events(void)
{
    /*
     * Claim before taking the flags: a flag set after the swap raises the
     * source again and the next wait wakes at once; the other order could
     * claim away the interrupt of a flag the swap did not see.
     */
    uint32_t id;
    while ((id = hf_mmio_read32(PLIC_CLAIM0)) != 0)
        hf_mmio_write32(PLIC_CLAIM0, id);
    hf_fence();
    uint32_t bits;
    __asm__ volatile ("amoswap.w.aqrl %0, zero, (%1)"
                      : "=r"(bits) : "r"(&event_page[0]) : "memory");
    pending_events |= bits;
}

uint32_t hf_vmbus_wait_for(uint32_t mask, uint64_t until_mtime)
{
    uint32_t hart = hf_hartid();

    for (;;) {
        collect_events();
        if (pending_events & mask)
            break;
        if (hf_mtime() >= until_mtime)
            break;
        hf_mtimecmp_set(hart, until_mtime);
        hf_csr_set(mie, MIP_MTIP);
        /* WFI does not stall while an enabled interrupt is pending, so a
         * wake-up between these lines is not lost */
        if (!(hf_csr_read(mip) & (MIP_MEIP | MIP_MTIP)))
            hf_wfi();
        hf_mtimecmp_disarm(hart);
        hf_csr_clear(mie, MIP_MTIP);
    }
    uint32_t got = pending_events & mask;
    pending_events &= ~mask;
    return got;
}

uint32_t hf_vmbus_wait(uint64_t until_mtime)
{
    return hf_vmbus_wait_for(0xffffffffu, until_mtime);
}

#endif /* !HF_VMBUS_NATIVE */
