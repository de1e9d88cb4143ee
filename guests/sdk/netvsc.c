/*
 * netvsc.c - the synthetic NIC over an HF_CH_NETWORK channel: FRAME
 * packets both ways, payload = one Ethernet-like frame (hf_vmbus.h).
 *
 * Receiving hands the room back to the host in batches: the host holds
 * frames for us while the host-to-guest ring is full and needs a SIGNAL to
 * go on, but one hypercall per frame would cost more than the frame. So a
 * SIGNAL follows a receive only once a quarter of the ring has been freed
 * since the last one, or when the ring is found empty with freed room not
 * yet announced; a reader that drains until it sees 0 therefore never
 * leaves the host waiting.
 */
#include "hf.h"
#include "hf_vmbus_client.h"

int hf_netvsc_open(struct hf_netvsc *n, uint32_t instance, void *ring,
                   uint32_t pages)
{
    memset(n, 0, sizeof(*n));
    const struct hf_offer *o = hf_vmbus_find(HF_CH_NETWORK, instance);
    if (!o)
        return HF_VMBUS_ENOCHANNEL;
    int rc = hf_vmbus_open(&n->ch, o, ring, pages);
    if (rc)
        return rc;
    /* 02:48, then the offer's param most significant byte first */
    n->mac[0] = 0x02;
    n->mac[1] = 0x48;
    n->mac[2] = (uint8_t)(o->param >> 24);
    n->mac[3] = (uint8_t)(o->param >> 16);
    n->mac[4] = (uint8_t)(o->param >> 8);
    n->mac[5] = (uint8_t)o->param;
    n->next_txid = 1;
    /* a ring that cannot carry a full frame would drop every big one */
    if (hf_ring_packet_bytes(HF_NET_FRAME_MAX) > n->ch.tx.size - 8u ||
        hf_ring_packet_bytes(HF_NET_FRAME_MAX) > n->ch.rx.size - 8u)
        return HF_VMBUS_ETOOBIG;
    return 0;
}

const uint8_t *hf_netvsc_mac(const struct hf_netvsc *n)
{
    return n->mac;
}

void hf_netvsc_mac_string(const uint8_t mac[6], char out[18])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 6; i++) {
        out[i * 3] = hex[mac[i] >> 4];
        out[i * 3 + 1] = hex[mac[i] & 15u];
        out[i * 3 + 2] = i < 5 ? ':' : '\0';
    }
}

static int frame_len_ok(uint32_t len)
{
    return len >= HF_NET_HEADER_BYTES && len <= HF_NET_FRAME_MAX;
}

/* 0 when head + data make one frame the NIC may send, else the error. */
static int frame_check(const struct hf_netvsc *n, uint32_t head_len,
                       uint32_t data_len)
{
    if (!n->ch.open)
        return HF_VMBUS_ENOCHANNEL;
    if (head_len > HF_NET_FRAME_MAX || data_len > HF_NET_FRAME_MAX ||
        !frame_len_ok(head_len + data_len))
        return HF_VMBUS_ETOOBIG;
    return 0;
}

int hf_netvsc_send2(struct hf_netvsc *n, const void *head, uint32_t head_len,
                    const void *data, uint32_t data_len)
{
    int rc = frame_check(n, head_len, data_len);
    if (rc)
        return rc;
    /* txid: the host ignores it for frames; a counter helps reading traces */
    return hf_vmbus_send(&n->ch, HF_NET_FRAME, n->next_txid++, head, head_len,
                         data, data_len);
}

int hf_netvsc_send(struct hf_netvsc *n, const void *frame, uint32_t len)
{
    return hf_netvsc_send2(n, frame, len, NULL, 0);
}

int hf_netvsc_send2_wait(struct hf_netvsc *n, const void *head,
                         uint32_t head_len, const void *data,
                         uint32_t data_len, uint64_t until)
{
    int rc = frame_check(n, head_len, data_len);
    if (rc)
        return rc;
    return hf_vmbus_send_wait(&n->ch, HF_NET_FRAME, n->next_txid++, head,
                              head_len, data, data_len, until);
}

int hf_netvsc_send_wait(struct hf_netvsc *n, const void *frame, uint32_t len,
                        uint64_t until)
{
    return hf_netvsc_send2_wait(n, frame, len, NULL, 0, until);
}

static void announce_room(struct hf_netvsc *n)
{
    if (n->rx_freed) {
        n->rx_freed = 0;
        hf_vmbus_signal(&n->ch);
    }
}

int hf_netvsc_recv(struct hf_netvsc *n, void *buf, uint32_t cap)
{
    if (!n->ch.open)
        return HF_VMBUS_ENOCHANNEL;
    for (;;) {
        struct hf_packet p;
        int rc = hf_ring_get(&n->ch.rx, &p, buf, cap, NULL, 0);
        if (rc <= 0) {
            /* empty (or untrustworthy): whatever was freed is announced */
            announce_room(n);
            return rc;
        }
        n->rx_freed += hf_ring_packet_bytes(p.length);
        if (n->rx_freed >= n->ch.rx.size / 4u)
            announce_room(n);
        /* not a frame, truncated, or no frame at all: skip it */
        if (p.type != HF_NET_FRAME || p.length > cap ||
            !frame_len_ok(p.length)) {
            n->rx_dropped++;
            continue;
        }
        return (int)p.length;
    }
}
