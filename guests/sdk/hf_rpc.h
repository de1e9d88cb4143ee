/*
 * hf_rpc.h - HFRPC: the request/response datagrams a guest service speaks
 * over its synthetic NIC (guests have no TCP/IP stack; the node's gateway
 * turns a client's TCP connection into these frames and back).
 *
 * Frames (see hf_vmbus.h, HF_CH_NETWORK): dst MAC[6] src MAC[6]
 * ethertype[2] (big-endian, HF_ETHERTYPE_RPC) then the HFRPC message:
 *
 *   u32 magic  HF_RPC_MAGIC
 *   u32 flow   the client's stream of requests (any value; echoed)
 *   u32 id     the request's number within its flow (echoed)
 *   u8  op     HF_RPC_GET / SET / DELETE / PING; a reply is op | HF_RPC_REPLY
 *   u8  status in replies: HF_RPC_OK, HF_RPC_NOT_FOUND, HF_RPC_ERROR, HF_RPC_BAD
 *   u16 key_len
 *   u32 value_len
 *   key bytes, then value bytes (SET's value; GET's reply value)
 *
 * All integers little-endian. A reply goes to the request's source MAC.
 * Requests may arrive more than once (a client retries after a timeout, a
 * frame is delivered twice around a live migration): every op must be safe
 * to repeat, and the server answers each copy. A SET is answered only once
 * it is durable on the service's disk.
 * Limits: key 1..HF_RPC_KEY_MAX bytes, value 0..HF_RPC_VALUE_MAX bytes.
 */
#ifndef HF_RPC_H
#define HF_RPC_H

#define HF_ETHERTYPE_RPC  0x88B5u
#define HF_RPC_MAGIC      0x50524648u /* "HFRP" */
#define HF_RPC_HEADER_BYTES 20u

#define HF_RPC_GET        1u
#define HF_RPC_SET        2u
#define HF_RPC_DELETE     3u
#define HF_RPC_PING       4u
#define HF_RPC_REPLY      0x80u

#define HF_RPC_OK         0u
#define HF_RPC_NOT_FOUND  1u
#define HF_RPC_ERROR      2u  /* the service failed (e.g. its disk) */
#define HF_RPC_BAD        3u  /* malformed request, or over the limits */

#define HF_RPC_KEY_MAX    64u
#define HF_RPC_VALUE_MAX  256u

#endif
