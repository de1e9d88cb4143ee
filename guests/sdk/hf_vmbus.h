/*
 * hf_vmbus.h - VMBus: the guest's side of Hyperfleet's synthetic devices.
 *
 * This header is the ABI between a guest and the hypervisor; the root's
 * side lives in packages/hypervisor (hypercalls, event flags, interrupt)
 * and packages/vmbus (rings, channels, the providers behind them).
 *
 * Hypercalls
 *   Bare M-mode guests use the hypercall page, an MMIO page at
 *   HF_HVCALL_BASE: store the arguments in ARG0..ARG5, then the call code
 *   in CODE (that store performs the call), then read ERROR (an SBI error
 *   code, 0 on success) and VALUE. S-mode kernels use `ecall` with
 *   a7 = HF_SBI_EXT_VMBUS, a6 = the call code, a0..a5 = the arguments
 *   (returns a0 = error, a1 = value). Calls are synchronous.
 *
 *   HF_HVCALL_QUERY(buf, len)      the channels the host offers: writes up
 *                                  to len / 16 struct hf_offer to buf;
 *                                  VALUE = how many there are.
 *   HF_HVCALL_CONNECT(page)        the event flags page (4 KiB aligned
 *                                  guest-physical address, 0 disconnects):
 *                                  the host sets bit c of it when channel c
 *                                  has news for the guest, then raises
 *                                  PLIC source HF_VMBUS_IRQ.
 *   HF_HVCALL_OPEN(ch, ring, pages) opens channel ch with its ring buffer
 *                                  pair at guest-physical `ring` (4 KiB
 *                                  aligned, pages even, 4..256): the first
 *                                  half is the guest-to-host ring, the
 *                                  second the host-to-guest ring.
 *   HF_HVCALL_CLOSE(ch)            closes it (the host stops touching the
 *                                  rings before the call returns).
 *   HF_HVCALL_SIGNAL(ch)           tells the host that channel ch's
 *                                  guest-to-host ring has packets (or that
 *                                  the guest made room in the other ring).
 *
 *   Errors: HF_SBI_ERR_* (SBI's codes): INVALID_PARAM for a bad channel
 *   or ring, INVALID_ADDRESS for memory outside the guest's RAM,
 *   ALREADY_STARTED for opening an open channel, ALREADY_STOPPED for
 *   closing a closed one.
 *
 * Rings
 *   Each half of the ring area is one header page and (half - 1) data
 *   pages. Header: write index, read index (byte offsets into the data
 *   area, multiples of 8), interrupt mask (the reader sets it to 1 while
 *   it polls and does not want signals; 0 otherwise), data size (set by
 *   whoever initialises the ring: the guest, before OPEN, zeroes both
 *   halves and sets data_size). Empty when read == write; the writer
 *   never fills the last 8 bytes, so full is write + 8 == read (mod
 *   size). A packet is a 16-byte struct hf_packet followed by `length`
 *   bytes of payload, padded to a multiple of 8; it may wrap around the
 *   end of the data area (its bytes continue at offset 0). The writer
 *   copies the whole packet, then (after a fence) stores the new write
 *   index; the reader copies it out, then (after a fence) stores the new
 *   read index. After writing, the writer signals the reader unless the
 *   reader's interrupt mask is set.
 *
 *   Every packet carries a transaction id: a reply echoes its request's.
 *
 * Channel types and their packets (all little-endian)
 *   HF_CH_STORAGE (instance n: the VM's n-th disk)
 *     guest: READ  {u64 offset; u32 length}          -> host: 0x80|type
 *            WRITE {u64 offset; u32 length; data}       {i32 status; data}
 *            FLUSH {}                                   (data for READ)
 *            INFO  {}          -> {i32 status; u32 sector; u64 size}
 *     offset and length are multiples of HF_SECTOR (512); length at most
 *     HF_STORAGE_MAX_IO. A WRITE is acknowledged only once durable.
 *     status: 0, or HF_EIO / HF_EINVAL (negative).
 *   HF_CH_NETWORK (instance n: the VM's n-th NIC)
 *     both ways: FRAME {frame bytes}: dst[6] src[6] ethertype[2] data,
 *     at most HF_NET_MTU + 14 bytes. The NIC's MAC is 02:48 followed by
 *     the offer's `param`, most significant byte first.
 *   HF_CH_HEARTBEAT: host PING {u64 seq} -> guest PONG {u64 seq; u32 health}
 *     (health 0 = healthy).
 *   HF_CH_SHUTDOWN:  host SHUTDOWN {u32 flags; char reason[]} -> guest ACK
 *     {i32 status}; a guest that accepts then powers off.
 *   HF_CH_TIMESYNC:  host TIME {u64 unix_ns; u32 flags}; flags bit 0: the
 *     VM was just restored or migrated, step the clock now.
 *   HF_CH_KVP: host SET {key NUL value NUL} (the guest stores it), host
 *     DELETE {key NUL} (the guest forgets the host's value), host GET
 *     {key NUL} -> guest VALUE {status; key NUL value NUL}; guest PUBLISH
 *     {key NUL value NUL} (the host records it), guest DELETE {key NUL}.
 */
#ifndef HF_VMBUS_H
#define HF_VMBUS_H

/* ---- the hypercall page (bare guests) and the SBI extension ------------ */
#define HF_HVCALL_BASE     0x00110000u
#define HF_HVCALL_ARG(i)   (HF_HVCALL_BASE + 4u * (i)) /* i = 0..5 */
#define HF_HVCALL_CODE     (HF_HVCALL_BASE + 0x18u)
#define HF_HVCALL_ERROR    (HF_HVCALL_BASE + 0x1Cu)
#define HF_HVCALL_VALUE    (HF_HVCALL_BASE + 0x20u)
#define HF_SBI_EXT_VMBUS   0x48465642u /* "HFVB" */

#define HF_HVCALL_QUERY    1u
#define HF_HVCALL_CONNECT  2u
#define HF_HVCALL_OPEN     3u
#define HF_HVCALL_CLOSE    4u
#define HF_HVCALL_SIGNAL   5u

#define HF_SBI_ERR_FAILED            (-1)
#define HF_SBI_ERR_NOT_SUPPORTED     (-2)
#define HF_SBI_ERR_INVALID_PARAM     (-3)
#define HF_SBI_ERR_INVALID_ADDRESS   (-5)
#define HF_SBI_ERR_ALREADY_STARTED   (-7)
#define HF_SBI_ERR_ALREADY_STOPPED   (-8)

/* PLIC source of the VMBus interrupt (the UART is 10) */
#define HF_VMBUS_IRQ       11u
/* channels are numbered 1..HF_VMBUS_MAX_CHANNELS-1 (0 is never used) */
#define HF_VMBUS_MAX_CHANNELS 32u

/* ---- offers ------------------------------------------------------------ */
#define HF_CH_STORAGE      1u
#define HF_CH_NETWORK      2u
#define HF_CH_HEARTBEAT    3u
#define HF_CH_SHUTDOWN     4u
#define HF_CH_TIMESYNC     5u
#define HF_CH_KVP          6u

/* ---- packets ----------------------------------------------------------- */
#define HF_PKT_REPLY       0x80u  /* a reply's type: the request's | 0x80 */
#define HF_STORAGE_READ    1u
#define HF_STORAGE_WRITE   2u
#define HF_STORAGE_FLUSH   3u
#define HF_STORAGE_INFO    4u
#define HF_NET_FRAME       1u
#define HF_HEARTBEAT_PING  1u
#define HF_SHUTDOWN_REQUEST 1u
#define HF_TIMESYNC_TIME   1u
#define HF_KVP_SET         1u
#define HF_KVP_GET         2u
#define HF_KVP_PUBLISH     3u
#define HF_KVP_DELETE      4u

#define HF_SECTOR          512u
#define HF_STORAGE_MAX_IO  (64u * 1024u)
#define HF_NET_MTU         1500u
#define HF_EIO             (-5)
#define HF_EINVAL          (-22)

#define HF_RING_HEADER_BYTES 4096u
#define HF_PACKET_HEADER_BYTES 16u

#ifndef __ASSEMBLER__
#include <stdint.h>

struct hf_offer {
    uint32_t channel;   /* 1..31 */
    uint32_t type;      /* HF_CH_* */
    uint32_t instance;  /* n-th of its type, from 0 */
    uint32_t param;     /* per type: the NIC's MAC (low 4 bytes) */
};

struct hf_ring_header {
    volatile uint32_t write_index;
    volatile uint32_t read_index;
    volatile uint32_t interrupt_mask;
    uint32_t data_size;
};

struct hf_packet {
    uint32_t length;    /* payload bytes, without this header or padding */
    uint16_t type;
    uint16_t flags;
    uint32_t txid_lo;   /* transaction id */
    uint32_t txid_hi;
};
#endif

#endif
