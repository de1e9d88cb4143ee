/*
 * ic.c - integration services: heartbeat, shutdown, timesync and KVP.
 *
 * One channel of each type (instance 0). hf_ic_poll() drains them all;
 * replies echo the request's transaction id and use its type |
 * HF_PKT_REPLY. Packets of unknown type or shape are dropped: a guest
 * keeps running whatever the host sends.
 *
 * KVP keeps two small tables: values the host SET (what GET answers
 * first) and keys the guest PUBLISHed (answered when the host has not set
 * the key). GET of an unknown key gets status HF_EINVAL and an empty
 * value.
 *
 * Timesync keeps one offset between the host's unix time and mtime
 * (100 ns per tick); "stepped" and "adjusted" both set it at once, the
 * flag only tells the handler why the host sent the time.
 */
#include "hf.h"
#include "hf_vmbus_client.h"

enum { IC_HEARTBEAT, IC_SHUTDOWN, IC_TIMESYNC, IC_KVP, IC_COUNT };

#define NS_PER_TICK    (1000000000u / HF_MTIME_HZ)
/* replies are small; a host that leaves no room for a second is gone */
#define SEND_TIMEOUT   ((uint64_t)HF_MTIME_HZ)
/* bounds one hf_ic_poll against a host that never stops sending */
#define POLL_BUDGET    256

struct kv {
    char key[HF_KVP_KEY_MAX];
    char value[HF_KVP_VALUE_MAX];
    int used;
};

static struct hf_vmbus_channel ics[IC_COUNT];
static const struct hf_ic_handlers *handlers;
static uint8_t rx[HF_IC_MAX_PAYLOAD + 1];
/* VALUE reply: status, key (at most a whole request) NUL, value NUL */
static uint8_t reply[4 + HF_IC_MAX_PAYLOAD + 1 + HF_KVP_VALUE_MAX];
static struct kv host_kv[HF_KVP_MAX_KEYS];
static struct kv guest_kv[HF_KVP_MAX_KEYS];
static uint64_t guest_txid = 1;
static int shutdown_ok;
static int time_valid;
static uint64_t time_offset_ns;     /* unix ns - mtime ns, modulo 2^64 */

static int ic_index(uint32_t type)
{
    switch (type) {
    case HF_CH_HEARTBEAT: return IC_HEARTBEAT;
    case HF_CH_SHUTDOWN:  return IC_SHUTDOWN;
    case HF_CH_TIMESYNC:  return IC_TIMESYNC;
    case HF_CH_KVP:       return IC_KVP;
    default:              return -1;
    }
}




int hf_ic_open(uint32_t type, void *ring, uint32_t pages)
{
    int i = ic_index(type);
    if (i < 0)
        return HF_SBI_ERR_INVALID_PARAM;
    const struct hf_offer *o = hf_vmbus_find(type, 0);
    if (!o)
        return HF_VMBUS_ENOCHANNEL;
    return hf_vmbus_open(&ics[i], o, ring, pages);
}

int hf_ic_is_open(uint32_t type)
{
    int i = ic_index(type);
    return i >= 0 && ics[i].open;
}

void hf_ic_set_handlers(const struct hf_ic_handlers *h) { handlers = h; }

int hf_ic_shutdown_accepted(void) { return shutdown_ok; }

int hf_ic_tx_idle(void)
{
    for (int i = 0; i < IC_COUNT; i++)
        if (!hf_vmbus_tx_idle(&ics[i]))
            return 0;
    return 1;
}

int hf_ic_time_valid(void) { return time_valid; }

uint64_t hf_ic_unix_ns(void)
{
    if (!time_valid)
        return 0;
    return hf_mtime() * NS_PER_TICK + time_offset_ns;
}

/* ---- KVP tables -------------------------------------------------------- */

static struct kv *kv_find(struct kv *t, const char *key)
{
    for (int i = 0; i < HF_KVP_MAX_KEYS; i++)
        if (t[i].used && hf_strcmp(t[i].key, key) == 0)
            return &t[i];
    return NULL;
}

/* Store key=value (both already known to fit); 0, or -1 when full. */
static int kv_store(struct kv *t, const char *key, const char *value)
{
    struct kv *e = kv_find(t, key);
    for (int i = 0; !e && i < HF_KVP_MAX_KEYS; i++)
        if (!t[i].used)
            e = &t[i];
    if (!e)
        return -1;
    memcpy(e->key, key, hf_strlen(key) + 1);
    memcpy(e->value, value, hf_strlen(value) + 1);
    e->used = 1;
    return 0;
}

const char *hf_ic_kvp_value(const char *key)
{
    struct kv *e = kv_find(host_kv, key);
    return e ? e->value : NULL;
}

int hf_ic_kvp_publish(const char *key, const char *value)
{
    size_t kl = hf_strlen(key), vl = hf_strlen(value);
    if (kl == 0 || kl >= HF_KVP_KEY_MAX || vl >= HF_KVP_VALUE_MAX)
        return HF_EINVAL;
    if (!ics[IC_KVP].open)
        return HF_VMBUS_ENOCHANNEL;
    kv_store(guest_kv, key, value);   /* a full table still publishes */
    return hf_vmbus_send_wait(&ics[IC_KVP], HF_KVP_PUBLISH, guest_txid++,
                              key, (uint32_t)kl + 1, value, (uint32_t)vl + 1,
                              hf_mtime() + SEND_TIMEOUT);
}

int hf_ic_kvp_delete(const char *key)
{
    size_t kl = hf_strlen(key);
    if (kl == 0 || kl >= HF_KVP_KEY_MAX)
        return HF_EINVAL;
    if (!ics[IC_KVP].open)
        return HF_VMBUS_ENOCHANNEL;
    struct kv *e = kv_find(guest_kv, key);
    if (e)
        e->used = 0;
    return hf_vmbus_send_wait(&ics[IC_KVP], HF_KVP_DELETE, guest_txid++, key,
                              (uint32_t)kl + 1, NULL, 0,
                              hf_mtime() + SEND_TIMEOUT);
}

/* ---- handlers ---------------------------------------------------------- */

static void send_reply(struct hf_vmbus_channel *ch, const struct hf_packet *req,
                       const void *payload, uint32_t len)
{
    /* a reply that cannot be sent is dropped: the host will ask again */
    hf_vmbus_send_wait(ch, (uint16_t)(HF_PKT_REPLY | req->type),
                       hf_packet_txid(req), payload, len, NULL, 0,
                       hf_mtime() + SEND_TIMEOUT);
}

static void on_heartbeat(struct hf_vmbus_channel *ch,
                         const struct hf_packet *p)
{
    if (p->type != HF_HEARTBEAT_PING || p->length < 8)
        return;
    uint8_t pong[12];
    memcpy(pong, rx, 8);        /* seq, echoed as sent */
    hf_put_le32(pong + 8, 0);      /* healthy */
    send_reply(ch, p, pong, sizeof(pong));
}

static void on_shutdown(struct hf_vmbus_channel *ch, const struct hf_packet *p)
{
    if (p->type != HF_SHUTDOWN_REQUEST || p->length < 4)
        return;
    /* reason: the rest of the payload, up to a NUL if there is one */
    uint32_t flags = hf_get_le32(rx);
    const char *reason = (const char *)rx + 4;
    int32_t status = 0;
    if (handlers && handlers->shutdown)
        status = handlers->shutdown(flags, reason);
    else
        hf_printf("shutdown: %s\n", reason);
    uint8_t ack[4];
    hf_put_le32(ack, (uint32_t)status);
    send_reply(ch, p, ack, sizeof(ack));
    if (status == 0)
        shutdown_ok = 1;
}

static void on_timesync(const struct hf_packet *p)
{
    if (p->type != HF_TIMESYNC_TIME || p->length < 12)
        return;
    uint64_t unix_ns = hf_get_le64(rx);
    uint32_t flags = hf_get_le32(rx + 8);
    time_offset_ns = unix_ns - hf_mtime() * NS_PER_TICK;
    time_valid = 1;
    if (handlers && handlers->time)
        handlers->time(unix_ns, (int)(flags & 1u));
}

/* Split "key NUL value [NUL]" (rx is NUL-terminated past the payload).
 * Returns 0 and the value, or -1 without a NUL after the key. */
static int split_kv(uint32_t len, const char **value)
{
    uint32_t kl = 0;
    while (kl < len && rx[kl])
        kl++;
    if (kl >= len)
        return -1;
    *value = (const char *)rx + kl + 1;
    return 0;
}

static void on_kvp(struct hf_vmbus_channel *ch, const struct hf_packet *p)
{
    const char *key = (const char *)rx;

    if (p->type == HF_KVP_SET) {
        const char *value;
        if (split_kv(p->length, &value) || key[0] == '\0' ||
            hf_strlen(key) >= HF_KVP_KEY_MAX ||
            hf_strlen(value) >= HF_KVP_VALUE_MAX)
            return;
        if (kv_store(host_kv, key, value) == 0 && handlers &&
            handlers->kvp_set)
            handlers->kvp_set(key, value);
    } else if (p->type == HF_KVP_DELETE) {
        /* the host took back one of its values: "key\0" */
        const char *rest;
        struct kv *e = split_kv(p->length, &rest) == 0 ? kv_find(host_kv, key) : NULL;
        if (e)
            e->used = 0;
    } else if (p->type == HF_KVP_GET) {
        struct kv *e = kv_find(host_kv, key);
        if (!e)
            e = kv_find(guest_kv, key);
        uint32_t kl = (uint32_t)hf_strlen(key);
        const char *value = e ? e->value : "";
        uint32_t vl = (uint32_t)hf_strlen(value);
        hf_put_le32(reply, e ? 0u : (uint32_t)HF_EINVAL);
        memcpy(reply + 4, key, kl + 1);
        memcpy(reply + 4 + kl + 1, value, vl + 1);
        send_reply(ch, p, reply, 4 + kl + 1 + vl + 1);
    }
}

int hf_ic_poll(void)
{
    int handled = 0;

    for (int i = 0; i < IC_COUNT; i++) {
        struct hf_vmbus_channel *ch = &ics[i];
        for (int budget = POLL_BUDGET; ch->open && budget > 0; budget--) {
            struct hf_packet p;
            int rc = hf_vmbus_recv(ch, &p, rx, HF_IC_MAX_PAYLOAD, NULL, 0);
            if (rc <= 0)
                break;      /* empty, or a ring we cannot trust */
            if (p.length > HF_IC_MAX_PAYLOAD)
                continue;   /* truncated: not worth acting on */
            rx[p.length] = 0;
            handled++;
            switch (i) {
            case IC_HEARTBEAT: on_heartbeat(ch, &p); break;
            case IC_SHUTDOWN:  on_shutdown(ch, &p); break;
            case IC_TIMESYNC:  on_timesync(&p); break;
            case IC_KVP:       on_kvp(ch, &p); break;
            }
        }
    }
    return handled;
}

void hf_ic_service(uint64_t drain_ticks)
{
    hf_ic_poll();
    if (!hf_ic_shutdown_accepted())
        return;
    /* give the host a moment to read the ACK before the machine stops */
    uint64_t until = hf_mtime() + drain_ticks;
    while (!hf_ic_tx_idle() && hf_mtime() < until)
        hf_vmbus_wait(hf_mtime() + HF_MTIME_HZ / 1000u);
    hf_exit(0);
}

int hf_vmbus_report(const char *prog, const char *name, int rc)
{
    if (rc == HF_VMBUS_ENOCHANNEL)
        hf_printf("%s: no %s channel\n", prog, name);
    else if (rc)
        hf_printf("%s: open %s failed %d\n", prog, name, rc);
    return rc;
}

void hf_ic_open_all(const char *prog, void *rings, uint32_t pages)
{
    static const struct { uint32_t type; const char *name; } ics[] = {
        { HF_CH_HEARTBEAT, "heartbeat" }, { HF_CH_SHUTDOWN, "shutdown" },
        { HF_CH_TIMESYNC, "timesync" }, { HF_CH_KVP, "kvp" },
    };
    for (uint32_t i = 0; i < 4; i++)
        hf_vmbus_report(prog, ics[i].name,
                        hf_ic_open(ics[i].type,
                                   (uint8_t *)rings + i * pages * HF_PAGE_SIZE,
                                   pages));
}
