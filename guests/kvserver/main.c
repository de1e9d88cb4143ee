/*
 * kvserver - a durable key-value store served over the synthetic NIC in
 * HFRPC datagrams (sdk/hf_rpc.h), kept on the virtual disk as a log.
 *
 * Boot arguments:
 *   disk=0|1      keep the data on storage instance 0 (default 1)
 *
 * Disk layout (512-byte sectors, integers little-endian):
 *   sector 0      superblock: "HFKVLOG1", u32 version (1), u32 boots,
 *                 u32 CRC-32 of the 16 bytes before it, rest zero;
 *                 rewritten with boots + 1 (and flushed) at every boot
 *   sector s >= 1 log record with seq = s, one per SET/DELETE:
 *                 u32 magic 0x564B4648 ("HFKV"), u32 seq, u8 op
 *                 (HF_RPC_SET / HF_RPC_DELETE), u8 0, u16 key_len,
 *                 u32 value_len, u32 crc, then key and value; rest zero.
 *                 crc = CRC-32 (IEEE 802.3, as zlib's crc32) over the
 *                 16 header bytes before it, then key, then value.
 *
 * At boot the records are replayed from sector 1 while each has the
 * magic, a good crc and seq = previous + 1; the first that does not ends
 * the log. Sectors beyond the end may hold records of a batch that was
 * written but never flushed (so never answered); were one of them to sit
 * right after a later record with the seq that fits, a future replay
 * would take it. So the BATCH_MAX sectors after the end are zeroed at
 * boot together with the superblock, before anything is served, and a
 * batch whose write or flush failed is zeroed over by the next one.
 *
 * Requests are served in group commits: every request waiting in the
 * receive ring (up to BATCH_MAX) is applied in memory in order, their
 * records go out in one WRITE, then one FLUSH, and only then are the
 * replies sent, so a reply never reveals data that is not durable. If the
 * write or flush fails, the batch's changes are undone in memory and its
 * SET/DELETE replies (and GETs after its first change, which may have
 * seen them) become HF_RPC_ERROR.
 *
 * Output:
 *   kvserver: replayed <records> records, <keys> keys
 *   kvserver: boot <boots>
 *   kvserver: no disk, data is not durable
 *   kvserver: serving on <mac>
 *   kvserver: <n> sets            (every 1000 acknowledged SETs)
 *   kvserver: disk full           (once)
 *   shutdown: <reason>
 *   kvserver: no <storage|network|heartbeat|shutdown|timesync|kvp> channel
 *   kvserver: disk error <status>
 *   kvserver: superblock <corrupt|version N>
 */
#include "hf.h"
#include "hf_rpc.h"
#include "hf_vmbus_client.h"
#include "kv.h"

#define STORAGE_PAGES   32u     /* max_io near 60 KiB: a batch in one WRITE */
#define IC_PAGES        4u
#define BATCH_MAX       64u     /* requests per group commit */
#define LOOP_TICKS      (HF_MTIME_HZ / 20u)        /* ~50 ms idle wake-up */
#define KVP_PERIOD      ((uint64_t)HF_MTIME_HZ)    /* key count updates */
/* a reply that finds no room for this long is dropped: the client resends */
#define REPLY_TIMEOUT   (HF_MTIME_HZ / 5u)
#define DRAIN_TICKS     (HF_MTIME_HZ / 10u)        /* ACK before power off */
#define MSG_OFF         HF_NET_HEADER_BYTES
#define REQ_MIN         (HF_NET_HEADER_BYTES + HF_RPC_HEADER_BYTES)
#define SETS_REPORT     1000u

static uint8_t storage_ring[STORAGE_PAGES * HF_PAGE_SIZE]
    __attribute__((aligned(HF_PAGE_SIZE)));
static uint8_t net_ring[HF_NETVSC_RING_PAGES * HF_PAGE_SIZE]
    __attribute__((aligned(HF_PAGE_SIZE)));
static uint8_t ic_rings[4][IC_PAGES * HF_PAGE_SIZE]
    __attribute__((aligned(HF_PAGE_SIZE)));
static uint8_t iobuf[HF_STORAGE_MAX_IO] __attribute__((aligned(8)));
static uint8_t logbuf[BATCH_MAX * KV_SECTOR] __attribute__((aligned(8)));
static uint8_t sb[KV_SECTOR];
static uint8_t rxbuf[HF_NET_FRAME_MAX] __attribute__((aligned(8)));

static struct hf_storvsc disk;
static struct hf_netvsc nic;
static int have_disk;
static int have_nic;
static uint32_t boots;
static uint32_t log_cap;        /* sectors on the disk: the log ends below */
static uint32_t log_tail;       /* the next record's sector (= its seq) */
static uint32_t log_dirty;      /* sectors from the tail that may hold junk */
static int disk_full_said;
static uint32_t sets_done;
static const uint8_t broadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

/* ---- a batch ----------------------------------------------------------- */

struct reply {
    uint8_t dst[6];
    uint8_t ethertype[2];
    uint32_t flow, id;
    uint8_t op;             /* the request's */
    uint8_t status;
    uint8_t changes;        /* a SET/DELETE with a record in this batch */
    uint8_t saw_change;     /* a GET after one of those */
    uint16_t vlen;
    uint8_t value[HF_RPC_VALUE_MAX];
};

/* the state of a key before a change of this batch, to undo it */
struct undo {
    uint8_t existed;
    uint8_t klen;
    uint16_t vlen;
    uint8_t key[HF_RPC_KEY_MAX];
    uint8_t value[HF_RPC_VALUE_MAX];
};

static struct reply replies[BATCH_MAX];
static struct undo undos[BATCH_MAX];
static uint32_t nreplies;
static uint32_t nrecords;       /* = undos in use */

static __attribute__((noreturn)) void boot_fail(int status)
{
    hf_printf("kvserver: disk error %d\n", status);
    hf_exit(1);
}

/* ---- disk: superblock, replay ----------------------------------------- */

static void apply_record(const struct kv_rec *r)
{
    if (r->op == HF_RPC_SET)
        kv_put(r->key, r->klen, r->value, r->vlen);
    else
        kv_delete(r->key, r->klen);
}

/* Replay the log; returns the number of records. */
static uint32_t replay(void)
{
    uint32_t per_read = disk.max_io / KV_SECTOR;
    uint32_t records = 0;
    log_tail = 1;
    while (log_tail < log_cap) {
        uint32_t n = log_cap - log_tail;
        if (n > per_read)
            n = per_read;
        int rc = hf_storvsc_read(&disk, (uint64_t)log_tail * KV_SECTOR, iobuf,
                                 n * KV_SECTOR);
        if (rc)
            boot_fail(rc);
        for (uint32_t k = 0; k < n; k++) {
            struct kv_rec r;
            if (!kv_rec_decode(iobuf + k * KV_SECTOR, log_tail, &r))
                return records;
            apply_record(&r);
            log_tail++;
            records++;
        }
    }
    return records;
}

/* 0, or the device's status; any record beyond the tail is gone after */
static int write_zeros(uint32_t first, uint32_t count)
{
    memset(logbuf, 0, sizeof(logbuf));
    while (count) {
        uint32_t n = count < BATCH_MAX ? count : BATCH_MAX;
        int rc = hf_storvsc_write(&disk, (uint64_t)first * KV_SECTOR, logbuf,
                                  n * KV_SECTOR);
        if (rc)
            return rc;
        first += n;
        count -= n;
    }
    return 0;
}

/* 1 when the disk holds the log (else the program runs without one) */
static int disk_boot(void)
{
    uint64_t size;
    uint32_t sector;
    int rc = hf_storvsc_info(&disk, &size, &sector);
    if (rc)
        boot_fail(rc);
    if (size / KV_SECTOR < 2u) {
        hf_printf("kvserver: disk of %llu bytes is too small\n", size);
        return 0;
    }
    /* seq is 32 bits: more sectors than that are never used */
    log_cap = size / KV_SECTOR > 0xffffffffull ? 0xffffffffu
                                               : (uint32_t)(size / KV_SECTOR);

    rc = hf_storvsc_read(&disk, 0, sb, KV_SECTOR);
    if (rc)
        boot_fail(rc);
    uint32_t version = 0;
    int sbrc = kv_sb_decode(sb, &boots, &version);
    if (sbrc == -3) {
        /* someone else's format: leave it alone */
        hf_printf("kvserver: superblock version %u\n", version);
        return 0;
    }
    if (sbrc == -2)
        hf_printf("kvserver: superblock corrupt\n");
    if (sbrc != 0)
        boots = 0;  /* fresh disk (or a torn superblock: the log still counts) */

    uint32_t records = replay();
    hf_printf("kvserver: replayed %u records, %u keys\n", records, kv_count());

    boots++;
    kv_sb_encode(sb, boots);
    rc = hf_storvsc_write(&disk, 0, sb, KV_SECTOR);
    if (!rc) {
        uint32_t z = log_cap - log_tail;
        rc = write_zeros(log_tail, z < BATCH_MAX ? z : BATCH_MAX);
    }
    if (!rc)
        rc = hf_storvsc_flush(&disk);
    if (rc)
        boot_fail(rc);
    log_dirty = 0;
    hf_printf("kvserver: boot %u\n", boots);
    return 1;
}

/* ---- requests ---------------------------------------------------------- */

static int same_mac(const uint8_t *a, const uint8_t *b)
{
    return memcmp(a, b, 6) == 0;
}

static int log_has_room(void)
{
    if (log_tail + nrecords < log_cap)
        return 1;
    if (!disk_full_said) {
        disk_full_said = 1;
        hf_printf("kvserver: disk full\n");
    }
    return 0;
}

/* Remember how key was, then append the record of the change. */
static void stage_change(uint8_t op, const uint8_t *key, uint32_t klen,
                         const uint8_t *val, uint32_t vlen)
{
    struct undo *u = &undos[nrecords];
    uint32_t old_len = 0;
    const uint8_t *old = kv_get(key, klen, &old_len);
    u->existed = old != NULL;
    u->klen = (uint8_t)klen;
    memcpy(u->key, key, klen);
    u->vlen = (uint16_t)old_len;
    if (old && old_len)
        memcpy(u->value, old, old_len);
    if (have_disk)
        kv_rec_encode(logbuf + nrecords * KV_SECTOR, log_tail + nrecords, op,
                      key, klen, val, vlen);
    nrecords++;
}

static int batch_has_change(void)
{
    return nrecords != 0;
}

/* Serve one received frame; queues at most one reply. */
static void handle_frame(const uint8_t *f, uint32_t len)
{
    if (len < HF_NET_HEADER_BYTES)
        return;
    if (!same_mac(f, nic.mac) && !same_mac(f, broadcast))
        return;
    if (((uint32_t)f[12] << 8 | f[13]) != HF_ETHERTYPE_RPC)
        return;
    /* too short to say whom and what to answer, or not HFRPC at all */
    if (len < REQ_MIN)
        return;
    const uint8_t *m = f + MSG_OFF;
    if (kv_get_le32(m) != HF_RPC_MAGIC)
        return;
    uint8_t op = m[12];
    if (op & HF_RPC_REPLY)
        return;             /* never answer an answer */

    struct reply *r = &replies[nreplies++];
    memcpy(r->dst, f + 6, 6);
    r->ethertype[0] = f[12];
    r->ethertype[1] = f[13];
    r->flow = kv_get_le32(m + 4);
    r->id = kv_get_le32(m + 8);
    r->op = op;
    r->status = HF_RPC_BAD;
    r->changes = 0;
    r->saw_change = 0;
    r->vlen = 0;

    uint32_t klen = kv_get_le16(m + 14);
    uint32_t vlen = kv_get_le32(m + 16);
    /* the lengths must describe the frame exactly (as the gateway's do) */
    if (vlen > HF_NET_FRAME_MAX || REQ_MIN + klen + vlen != len)
        return;
    const uint8_t *key = m + HF_RPC_HEADER_BYTES;
    const uint8_t *val = key + klen;
    int key_ok = klen >= 1 && klen <= HF_RPC_KEY_MAX;

    switch (op) {
    case HF_RPC_PING:
        r->status = HF_RPC_OK;
        break;
    case HF_RPC_GET: {
        if (!key_ok || vlen != 0)
            break;
        uint32_t n = 0;
        const uint8_t *v = kv_get(key, klen, &n);
        r->saw_change = batch_has_change();
        if (!v) {
            r->status = HF_RPC_NOT_FOUND;
            break;
        }
        memcpy(r->value, v, n);
        r->vlen = (uint16_t)n;
        r->status = HF_RPC_OK;
        break;
    }
    case HF_RPC_SET: {
        if (!key_ok || vlen > HF_RPC_VALUE_MAX)
            break;
        uint32_t n;
        int is_new = kv_get(key, klen, &n) == NULL;
        if ((is_new && kv_count() >= KV_MAX_KEYS) ||
            (have_disk && !log_has_room())) {
            r->status = HF_RPC_ERROR;
            break;
        }
        stage_change(HF_RPC_SET, key, klen, val, vlen);
        kv_put(key, klen, val, vlen);
        r->changes = 1;
        r->status = HF_RPC_OK;
        break;
    }
    case HF_RPC_DELETE: {
        if (!key_ok || vlen != 0)
            break;
        uint32_t n;
        if (kv_get(key, klen, &n) == NULL) {
            r->status = HF_RPC_NOT_FOUND;
            break;
        }
        if (have_disk && !log_has_room()) {
            r->status = HF_RPC_ERROR;
            break;
        }
        stage_change(HF_RPC_DELETE, key, klen, NULL, 0);
        kv_delete(key, klen);
        r->changes = 1;
        r->status = HF_RPC_OK;
        break;
    }
    default:
        break;              /* unknown op: HF_RPC_BAD */
    }
}

/* Undo the batch's changes, newest first, back to the state before it. */
static void undo_batch(void)
{
    while (nrecords) {
        struct undo *u = &undos[--nrecords];
        if (u->existed)
            kv_put(u->key, u->klen, u->value, u->vlen);
        else
            kv_delete(u->key, u->klen);
    }
}

/* Make the batch's records durable: 0, or the device's status. */
static int commit(void)
{
    if (!have_disk || nrecords == 0)
        return 0;
    /* also cover what a failed batch may have left beyond the records */
    uint32_t n = nrecords > log_dirty ? nrecords : log_dirty;
    if (n > log_cap - log_tail)
        n = log_cap - log_tail;
    if (n > nrecords)
        memset(logbuf + nrecords * KV_SECTOR, 0, (n - nrecords) * KV_SECTOR);
    int rc = hf_storvsc_write(&disk, (uint64_t)log_tail * KV_SECTOR, logbuf,
                              n * KV_SECTOR);
    if (!rc)
        rc = hf_storvsc_flush(&disk);
    if (rc) {
        if (nrecords > log_dirty)
            log_dirty = nrecords;
        hf_printf("kvserver: disk error %d\n", rc);
        return rc;
    }
    log_tail += nrecords;
    log_dirty = 0;
    return 0;
}

static void send_reply(const struct reply *r)
{
    uint8_t h[REQ_MIN];
    memcpy(h, r->dst, 6);
    memcpy(h + 6, nic.mac, 6);
    h[12] = r->ethertype[0];
    h[13] = r->ethertype[1];
    uint8_t *m = h + MSG_OFF;
    kv_put_le32(m, HF_RPC_MAGIC);
    kv_put_le32(m + 4, r->flow);
    kv_put_le32(m + 8, r->id);
    m[12] = (uint8_t)(r->op | HF_RPC_REPLY);
    m[13] = r->status;
    kv_put_le16(m + 14, 0);             /* replies carry no key */
    kv_put_le32(m + 16, r->vlen);
    /* dropped when the host takes nothing for a while: the client resends */
    hf_netvsc_send2_wait(&nic, h, sizeof(h), r->value, r->vlen,
                         hf_mtime() + REPLY_TIMEOUT);
}

/* Take what waits in the NIC's ring (up to BATCH_MAX requests), commit,
 * answer. Returns 1 when the batch was full (more may be waiting). */
static int serve_batch(void)
{
    nreplies = 0;
    nrecords = 0;
    while (nreplies < BATCH_MAX) {
        int len = hf_netvsc_recv(&nic, rxbuf, sizeof(rxbuf));
        if (len <= 0)
            break;
        handle_frame(rxbuf, (uint32_t)len);
    }
    if (nreplies == 0)
        return 0;

    int failed = commit() != 0;
    if (failed)
        undo_batch();
    for (uint32_t i = 0; i < nreplies; i++) {
        struct reply *r = &replies[i];
        if (failed && (r->changes || r->saw_change)) {
            r->status = HF_RPC_ERROR;
            r->vlen = 0;
        }
        if (r->op == HF_RPC_SET && r->status == HF_RPC_OK &&
            ++sets_done % SETS_REPORT == 0)
            hf_printf("kvserver: %u sets\n", sets_done);
        send_reply(r);
    }
    return nreplies == BATCH_MAX;
}

/* ---- integration services ---------------------------------------------- */

/* Poll the ICs; powers off once a shutdown was accepted. Every answered
 * change is already durable here (batches commit before they answer). */
static void service(void)
{
    hf_ic_service(DRAIN_TICKS);
}


static uint32_t keys_published;
static uint64_t keys_published_at;

static void publish_keys(uint64_t now)
{
    char v[12];
    keys_published = kv_count();
    keys_published_at = now;
    hf_snprintf(v, sizeof(v), "%u", keys_published);
    hf_ic_kvp_publish("kvserver.keys", v);
}

/* ---- main -------------------------------------------------------------- */

int main(uint32_t hartid, uintptr_t fdt)
{
    (void)hartid;
    (void)fdt;

    int want_disk = hf_arg_int("disk", 1) != 0;
    kv_init();

    int rc = hf_vmbus_init();
    if (rc) {
        hf_printf("kvserver: connect failed %d\n", rc);
        return 1;
    }
    int offers = hf_vmbus_query();
    if (offers < 0) {
        hf_printf("kvserver: query failed %d\n", offers);
        return 1;
    }

    if (want_disk) {
        rc = hf_storvsc_open(&disk, 0, storage_ring, STORAGE_PAGES);
        hf_vmbus_report("kvserver", "storage", rc);
        have_disk = rc == 0;
    }
    rc = hf_netvsc_open(&nic, 0, net_ring, HF_NETVSC_RING_PAGES);
    hf_vmbus_report("kvserver", "network", rc);
    have_nic = rc == 0;
    hf_ic_open_all("kvserver", ic_rings, IC_PAGES);

    if (have_disk)
        have_disk = disk_boot();
    if (!have_disk)
        hf_printf("kvserver: no disk, data is not durable\n");

    char mac[18];
    hf_netvsc_mac_string(nic.mac, mac);
    hf_ic_kvp_publish("kvserver.status", "ready");
    if (have_nic)
        hf_ic_kvp_publish("kvserver.mac", mac);
    publish_keys(hf_mtime());
    if (have_nic)
        hf_printf("kvserver: serving on %s\n", mac);

    for (;;) {
        service();
        int more = have_nic && serve_batch();
        uint64_t now = hf_mtime();
        if (kv_count() != keys_published &&
            now - keys_published_at >= KVP_PERIOD)
            publish_keys(now);
        if (more)
            continue;
        uint64_t until = now + LOOP_TICKS;
        /* a changed count must not wait longer than its period */
        if (kv_count() != keys_published &&
            keys_published_at + KVP_PERIOD < until)
            until = keys_published_at + KVP_PERIOD;
        hf_vmbus_wait(until);
    }
}
