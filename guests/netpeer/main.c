/*
 * netpeer - a guest that talks to another guest over the virtual switch:
 * it sends an HFRPC PING (hf_rpc.h) from its synthetic NIC to the MAC in
 * its boot arguments every period and counts the replies, so a test sees
 * VM-to-VM traffic cross nodes, and go on while either VM moves.
 *
 * Boot arguments:
 *   peer=02:48:xx:xx:xx:xx   whom to ping (e.g. a kvserver VM's NIC)
 *   period=MS                between pings (default 100)
 *
 * Output:
 *   netpeer: on <mac>, pinging <peer>
 *   netpeer: first reply from <peer>
 *   netpeer: sent <n> answered <m>     (every 20 pings)
 *   netpeer: no network channel | bad peer "<text>"
 *   shutdown: <reason>
 */
#include "hf.h"
#include "hf_rpc.h"
#include "hf_vmbus_client.h"

#define IC_PAGES      4u
#define REPORT_EVERY  20u
#define MSG_OFF       HF_NET_HEADER_BYTES
#define FLOW          0x6e70u     /* "np": this guest's stream of pings */

static uint8_t net_ring[HF_NETVSC_RING_PAGES * HF_PAGE_SIZE]
    __attribute__((aligned(HF_PAGE_SIZE)));
static uint8_t ic_rings[4][IC_PAGES * HF_PAGE_SIZE]
    __attribute__((aligned(HF_PAGE_SIZE)));
static uint8_t rxbuf[HF_NET_FRAME_MAX] __attribute__((aligned(8)));

static struct hf_netvsc nic;
static uint8_t peer[6];
/* one bit per ping id (mod 1024): answered already, so a reply that comes
 * twice (a resent frame around a move) is counted once */
static uint8_t answered_bits[128];

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* "02:48:0a:0b:0c:0d" -> 6 bytes; 0 on success. */
static int parse_mac(const char *s, uint8_t out[6])
{
    for (int i = 0; i < 6; i++) {
        int hi = hexval(s[3 * i]), lo = hexval(s[3 * i + 1]);
        char sep = s[3 * i + 2];
        if (hi < 0 || lo < 0 || sep != (i == 5 ? '\0' : ':'))
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static int send_ping(uint32_t id)
{
    uint8_t f[HF_NET_HEADER_BYTES + HF_RPC_HEADER_BYTES];
    memcpy(f, peer, 6);
    memcpy(f + 6, nic.mac, 6);
    f[12] = (uint8_t)(HF_ETHERTYPE_RPC >> 8);
    f[13] = (uint8_t)HF_ETHERTYPE_RPC;
    uint8_t *m = f + MSG_OFF;
    hf_put_le32(m, HF_RPC_MAGIC);
    hf_put_le32(m + 4, FLOW);
    hf_put_le32(m + 8, id);
    m[12] = HF_RPC_PING;
    m[13] = 0;
    m[14] = m[15] = 0;                  /* no key */
    hf_put_le32(m + 16, 0);             /* no value */
    return hf_netvsc_send(&nic, f, sizeof(f));
}

/* A PING reply to this guest's flow, from the peer: its id, else -1. */
static long reply_id(const uint8_t *f, int len)
{
    const uint8_t *m = f + MSG_OFF;
    if (len < (int)(HF_NET_HEADER_BYTES + HF_RPC_HEADER_BYTES) ||
        memcmp(f, nic.mac, 6) != 0 || memcmp(f + 6, peer, 6) != 0 ||
        hf_get_le32(m) != HF_RPC_MAGIC || hf_get_le32(m + 4) != FLOW ||
        m[12] != (HF_RPC_PING | HF_RPC_REPLY) || m[13] != HF_RPC_OK)
        return -1;
    return (long)hf_get_le32(m + 8);
}

int main(uint32_t hartid, uintptr_t fdt)
{
    (void)hartid;
    (void)fdt;

    char text[24];
    if (!hf_arg_str("peer", text, sizeof(text)) || parse_mac(text, peer) != 0) {
        hf_printf("netpeer: bad peer \"%s\"\n", hf_arg_str("peer", text, sizeof(text)) ? text : "");
        return 1;
    }
    uint64_t period = (uint64_t)hf_arg_int("period", 100) * (HF_MTIME_HZ / 1000u);
    if (period == 0)
        period = HF_MTIME_HZ / 10u;

    int rc = hf_vmbus_init();
    if (rc == 0 && hf_vmbus_query() < 0)
        rc = -1;
    if (rc == 0)
        rc = hf_netvsc_open(&nic, 0, net_ring, HF_NETVSC_RING_PAGES);
    if (rc != 0) {
        hf_vmbus_report("netpeer", "network", rc);
        return 1;
    }
    hf_ic_open_all("netpeer", ic_rings, IC_PAGES);

    char mine[18];
    hf_netvsc_mac_string(nic.mac, mine);
    hf_printf("netpeer: on %s, pinging %s\n", mine, text);

    uint32_t sent = 0, answered = 0;
    uint64_t next = hf_mtime();
    for (;;) {
        hf_ic_service(HF_MTIME_HZ / 10u);
        uint64_t now = hf_mtime();
        if (now >= next) {
            uint32_t id = sent + 1;
            answered_bits[(id % 1024u) / 8u] &= (uint8_t)~(1u << (id % 8u));
            if (send_ping(id) == 0) {
                sent = id;
                if (sent % REPORT_EVERY == 0)
                    hf_printf("netpeer: sent %u answered %u\n", sent, answered);
            }
            next = now + period;
        }
        for (;;) {
            int len = hf_netvsc_recv(&nic, rxbuf, sizeof(rxbuf));
            if (len <= 0)
                break;
            long id = reply_id(rxbuf, len);
            /* only replies to the last 1024 pings count, each once */
            if (id <= 0 || (uint32_t)id > sent || sent - (uint32_t)id >= 1024u)
                continue;
            uint8_t bit = (uint8_t)(1u << (id % 8u));
            uint8_t *slot = &answered_bits[(id % 1024u) / 8u];
            if (*slot & bit)
                continue;
            *slot |= bit;
            if (answered++ == 0)
                hf_printf("netpeer: first reply from %s\n", text);
        }
        hf_vmbus_wait(next);
    }
}
