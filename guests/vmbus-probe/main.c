/*
 * vmbus-probe - exercises the VMBus synthetic devices: a disk that keeps
 * a verifiable log across boots, and the integration services.
 *
 * Boot arguments (all optional):
 *   rate=<R>      records per second (default 20)
 *   disk=0|1      use storage instance 0 (default 1)
 *   records=<N>   stop after N records and power off with success
 *                 (default 0: run forever)
 *
 * Disk layout (512-byte sectors):
 *   sector 0      superblock: magic "HFPROBE1", u32 boots, u32 last_seq,
 *                 u32 check (FNV-1a 32 over the 16 bytes before it), all
 *                 little-endian, rest zero
 *   sector 1 + (seq % 2000)   record seq, pattern(seq) below
 *
 * A record counts once the FLUSH after it and after the superblock that
 * names it has been answered. At boot the records the superblock vouches
 * for, [max(1, last_seq - 1999), last_seq], are checked. The oldest of
 * them shares its sector with record last_seq + 1, which may have reached
 * the disk before a crash kept its superblock from following, so that
 * sector may hold either record.
 *
 * ICs: heartbeats are answered by the SDK; a shutdown request is printed,
 * acknowledged and the machine powered off with success; every TIME is
 * printed; the KVP keys probe.boots and probe.status are published after
 * the disk step, and a host SET of probe.echo=V is echoed as
 * probe.echoed=V. Without a disk the probe prints a tick every guest
 * second instead of writing records.
 *
 * Output:
 *   vmbus-probe: offers <count>
 *   vmbus-probe: no <storage|heartbeat|shutdown|timesync|kvp> channel
 *   disk: size <bytes> sector <sector>
 *   disk: verified <count> records up to <last_seq>
 *   disk: boot <boots>
 *   disk: record <seq>            (seq a multiple of 20)
 *   vmbus-probe: done
 *   probe: tick <n>               (without a disk)
 *   shutdown: <reason>
 *   timesync: <unix seconds> stepped|adjusted
 *   kvp: echo <value>
 * and on failure: disk: CORRUPT record <seq>, disk: CORRUPT superblock,
 * disk: error <status>.
 */
#include "hf.h"
#include "hf_vmbus_client.h"

#define SLOTS           2000u
#define STORAGE_PAGES   8u
#define IC_PAGES        4u
#define DRAIN_TICKS     (HF_MTIME_HZ / 10u)  /* ACK delivery before power off */

static uint8_t storage_ring[STORAGE_PAGES * HF_PAGE_SIZE]
    __attribute__((aligned(HF_PAGE_SIZE)));
static uint8_t ic_rings[4][IC_PAGES * HF_PAGE_SIZE]
    __attribute__((aligned(HF_PAGE_SIZE)));
static uint8_t iobuf[HF_STORAGE_MAX_IO] __attribute__((aligned(8)));
static uint8_t sb[HF_SECTOR];
static uint8_t rec[HF_SECTOR];

static struct hf_storvsc disk;
static int have_disk;
static uint32_t boots;
static uint32_t last_seq;

static __attribute__((noreturn)) void fail_status(int status)
{
    hf_printf("disk: error %d\n", status);
    hf_exit(1);
}

/* ---- records ----------------------------------------------------------- */

static void pattern(uint32_t seq, uint8_t *b)
{
    uint8_t h = (uint8_t)((seq * 2654435761u) >> 24);
    for (uint32_t i = 0; i < HF_SECTOR; i++)
        b[i] = h ^ (uint8_t)i ^ (uint8_t)(seq >> (i % 4u * 8u));
    b[0] = (uint8_t)seq;
    b[1] = (uint8_t)(seq >> 8);
    b[2] = (uint8_t)(seq >> 16);
    b[3] = (uint8_t)(seq >> 24);
}

static uint64_t slot_offset(uint32_t seq)
{
    return (uint64_t)(1u + seq % SLOTS) * HF_SECTOR;
}

static int pattern_is(uint32_t seq, const uint8_t *b)
{
    pattern(seq, rec);
    return memcmp(rec, b, HF_SECTOR) == 0;
}

/* ---- superblock -------------------------------------------------------- */



static uint32_t fnv1a(const uint8_t *p, uint32_t n)
{
    uint32_t h = 2166136261u;
    while (n--)
        h = (h ^ *p++) * 16777619u;
    return h;
}

static void write_superblock(void)
{
    memset(sb, 0, sizeof(sb));
    memcpy(sb, "HFPROBE1", 8);
    hf_put_le32(sb + 8, boots);
    hf_put_le32(sb + 12, last_seq);
    hf_put_le32(sb + 16, fnv1a(sb, 16));
    int rc = hf_storvsc_write(&disk, 0, sb, HF_SECTOR);
    if (rc)
        fail_status(rc);
}

static void read_superblock(void)
{
    int rc = hf_storvsc_read(&disk, 0, sb, HF_SECTOR);
    if (rc)
        fail_status(rc);
    if (memcmp(sb, "HFPROBE1", 8) != 0) {
        boots = 0;          /* a fresh disk */
        last_seq = 0;
        return;
    }
    if (hf_get_le32(sb + 16) != fnv1a(sb, 16)) {
        hf_printf("disk: CORRUPT superblock\n");
        hf_exit(1);
    }
    boots = hf_get_le32(sb + 8);
    last_seq = hf_get_le32(sb + 12);
}

static void verify_records(void)
{
    uint32_t first = last_seq > SLOTS - 1u ? last_seq - (SLOTS - 1u) : 1u;
    uint32_t count = last_seq >= first ? last_seq - first + 1u : 0;
    uint64_t seq = first;

    while (seq <= last_seq) {
        /* one read per run of consecutive slots */
        uint32_t slot = 1u + (uint32_t)(seq % SLOTS);
        uint64_t n = (uint64_t)last_seq - seq + 1u;
        if (n > SLOTS + 1u - slot)
            n = SLOTS + 1u - slot;
        if (n > HF_STORAGE_MAX_IO / HF_SECTOR)
            n = HF_STORAGE_MAX_IO / HF_SECTOR;
        int rc = hf_storvsc_read(&disk, (uint64_t)slot * HF_SECTOR, iobuf,
                                 (uint32_t)n * HF_SECTOR);
        if (rc)
            fail_status(rc);
        for (uint32_t k = 0; k < n; k++) {
            uint32_t s = (uint32_t)seq + k;
            const uint8_t *b = iobuf + k * HF_SECTOR;
            if (pattern_is(s, b))
                continue;
            if (s == first && last_seq >= SLOTS && pattern_is(s + SLOTS, b))
                continue;
            hf_printf("disk: CORRUPT record %u\n", s);
            hf_exit(1);
        }
        seq += n;
    }
    hf_printf("disk: verified %u records up to %u\n", count, last_seq);
}

static void disk_boot(void)
{
    uint64_t size;
    uint32_t sector;
    int rc = hf_storvsc_info(&disk, &size, &sector);
    if (rc)
        fail_status(rc);
    hf_printf("disk: size %llu sector %u\n", size, sector);
    if (size < (uint64_t)(SLOTS + 1u) * HF_SECTOR)
        fail_status(HF_EINVAL);   /* no room for the slots */

    read_superblock();
    verify_records();

    boots++;
    write_superblock();
    rc = hf_storvsc_flush(&disk);
    if (rc)
        fail_status(rc);
    hf_printf("disk: boot %u\n", boots);
}

static void write_record(void)
{
    uint32_t seq = last_seq + 1u;
    pattern(seq, rec);
    int rc = hf_storvsc_write(&disk, slot_offset(seq), rec, HF_SECTOR);
    if (rc)
        fail_status(rc);
    last_seq = seq;
    write_superblock();
    rc = hf_storvsc_flush(&disk);
    if (rc)
        fail_status(rc);
}

/* ---- integration services ---------------------------------------------- */

static void on_time(uint64_t unix_ns, int stepped)
{
    hf_printf("timesync: %llu %s\n", unix_ns / 1000000000ull,
              stepped ? "stepped" : "adjusted");
}

static void on_kvp_set(const char *key, const char *value)
{
    if (hf_strcmp(key, "probe.echo") != 0)
        return;
    hf_ic_kvp_publish("probe.echoed", value);
    hf_printf("kvp: echo %s\n", value);
}

static const struct hf_ic_handlers handlers = {
    .time = on_time,
    .kvp_set = on_kvp_set,
};

static void service(void)
{
    hf_ic_service(DRAIN_TICKS);
}


/* ---- main loops -------------------------------------------------------- */

/* Records due t ticks after the start at `rate` per second. */
static uint64_t records_due(uint64_t t, uint32_t rate)
{
    return t / HF_MTIME_HZ * rate + t % HF_MTIME_HZ * rate / HF_MTIME_HZ;
}

static __attribute__((noreturn)) void record_loop(uint32_t rate,
                                                  uint32_t records)
{
    const uint64_t start = hf_mtime();
    uint64_t done = 0;

    for (;;) {
        service();
        uint64_t now = hf_mtime();
        if (done < records_due(now - start, rate)) {
            write_record();
            done++;
            if (last_seq % 20u == 0)
                hf_printf("disk: record %u\n", last_seq);
            if (records && done >= records) {
                hf_printf("vmbus-probe: done\n");
                hf_exit(0);
            }
            continue;
        }
        /* first instant at which record done + 1 is due */
        uint64_t k = done + 1u;
        uint64_t next = start + k / rate * HF_MTIME_HZ +
                        (k % rate * HF_MTIME_HZ + rate - 1u) / rate;
        hf_vmbus_wait(next);
    }
}

static __attribute__((noreturn)) void tick_loop(void)
{
    const uint64_t start = hf_mtime();
    uint32_t tick = 1;

    for (;;) {
        service();
        uint64_t when = start + (uint64_t)tick * HF_MTIME_HZ;
        if (hf_mtime() >= when) {
            hf_printf("probe: tick %u\n", tick);
            tick++;
            continue;
        }
        hf_vmbus_wait(when);
    }
}

int main(uint32_t hartid, uintptr_t fdt)
{
    (void)hartid;
    (void)fdt;

    long rate_arg = hf_arg_int("rate", 20);
    long records_arg = hf_arg_int("records", 0);
    int want_disk = hf_arg_int("disk", 1) != 0;
    uint32_t rate = rate_arg < 1 ? 1u : (uint32_t)rate_arg;
    uint32_t records = records_arg < 0 ? 0u : (uint32_t)records_arg;

    int rc = hf_vmbus_init();
    if (rc) {
        hf_printf("vmbus-probe: connect failed %d\n", rc);
        return 1;
    }
    int offers = hf_vmbus_query();
    if (offers < 0) {
        hf_printf("vmbus-probe: query failed %d\n", offers);
        return 1;
    }
    hf_printf("vmbus-probe: offers %d\n", offers);

    if (want_disk) {
        rc = hf_storvsc_open(&disk, 0, storage_ring, STORAGE_PAGES);
        hf_vmbus_report("vmbus-probe", "storage", rc);
        have_disk = rc == 0;
    }
    hf_ic_open_all("vmbus-probe", ic_rings, IC_PAGES);
    hf_ic_set_handlers(&handlers);

    if (have_disk)
        disk_boot();

    char v[12];
    hf_snprintf(v, sizeof(v), "%u", boots);
    hf_ic_kvp_publish("probe.boots", v);
    hf_ic_kvp_publish("probe.status", "ready");

    if (have_disk)
        record_loop(rate, records);
    tick_loop();
}
