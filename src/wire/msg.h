/*
 * msg.h -- the libps wire format: a fixed 104-byte header and up to four
 * segments (keys, values, per-key lengths, aux bytes).
 *
 * Layout of the header, every field little-endian, offsets static_assert'ed
 * in msg.c:
 *
 *   off size field
 *     0    4 magic      "PSM1" as u32 0x314D5350
 *     4    1 version    PSI_WIRE_VERSION
 *     5    1 type       psi_msg_type
 *     6    2 flags      PSI_F_*
 *     8    4 table      table id (0 for control messages)
 *    12    4 sender     node id of the sender
 *    16    4 receiver   node id of the receiver
 *    20    4 epoch      view epoch the sender had
 *    24    8 timestamp  per sender; a response echoes the request's
 *    32    8 key_lo     key range [key_lo, key_hi) the message covers
 *    40    8 key_hi
 *    48    8 key_count  number of keys in the keys segment
 *    56    8 filters    up to 8 filter ids, 0 = none, applied in order
 *    64   32 seg_len[4] byte length of each segment (keys, vals, lens, aux)
 *    96    4 arg        type-specific 32-bit argument (status, group, ...)
 *   100    4 crc        CRC32C of bytes 0..99
 *
 * On the wire a frame is the header followed by the segments, back to back,
 * in order.  The UCX transport sends the header as the active-message
 * header and the segments as the payload; psi_frame_* handle the contiguous
 * form (used by tests, the fuzzer and anything that needs one buffer).
 *
 * Validation happens before any allocation: magic, version, CRC, type,
 * each segment length against the cap, the sum against the bytes received,
 * and key_count against the keys segment (8 bytes a key) unless filters
 * were applied (filters[0] != 0: the kv layer checks after reversing them).
 */
#ifndef PSI_WIRE_MSG_H
#define PSI_WIRE_MSG_H

#include <stddef.h>
#include <stdint.h>

#define PSI_WIRE_MAGIC 0x314D5350u
#define PSI_WIRE_VERSION 1
#define PSI_HDR_SIZE 104
#define PSI_MAX_FILTERS 8
#define PSI_NSEG 4
/* Default cap on a message's payload (sum of segments): 1 GiB. */
#define PSI_DEFAULT_MAX_PAYLOAD (1ull << 30)

enum { PSI_SEG_KEYS = 0, PSI_SEG_VALS = 1, PSI_SEG_LENS = 2, PSI_SEG_AUX = 3 };

/* Message types.  Control types are handled by src/node; data types by kv. */
typedef enum psi_msg_type {
    PSI_MSG_INVALID = 0,
    PSI_MSG_JOIN = 1,        /* node -> scheduler: aux = join request */
    PSI_MSG_VIEW = 2,        /* scheduler -> node: aux = encoded view */
    PSI_MSG_BARRIER = 3,     /* node -> scheduler: arg = group, key_lo = barrier number */
    PSI_MSG_BARRIER_DONE = 4,/* scheduler -> node: arg = group, key_lo = barrier number */
    PSI_MSG_HEARTBEAT = 5,   /* node -> scheduler, unreliable */
    PSI_MSG_ACK = 6,         /* acknowledges a reliable control message */
    PSI_MSG_LEAVE = 7,       /* node -> scheduler: exiting cleanly */
    PSI_MSG_DATA = 8,        /* push / pull (src/kv) */
    PSI_MSG_CALL = 9,        /* remote function call and its reply (src/task) */
    PSI_MSG_SERVE = 10,      /* joining server -> scheduler: arg = 1 stream my share to
                              * me, 2 I hold it (src/replica/join.c) */
    PSI_MSG_REPORT = 11,     /* node -> scheduler, unreliable, about once a second:
                              * arg = report format, key_lo = report number, aux =
                              * the node's table counters and named values
                              * (src/node/report.h) */
    PSI_MSG_TYPE_MAX = 12    /* one past the largest valid type */
} psi_msg_type;

/* Flags. */
enum {
    PSI_F_REQUEST = 1u << 0,
    PSI_F_RESPONSE = 1u << 1,
    PSI_F_PUSH = 1u << 2,
    PSI_F_PULL = 1u << 3,
    PSI_F_CONTROL = 1u << 4,
    PSI_F_RELIABLE = 1u << 5, /* receiver must ACK; sender resends until then */
    PSI_F_REPL = 1u << 6,     /* DATA: a chain-replication forward or its ack */
    PSI_F_TRAIN = 1u << 7,    /* DATA push request: its values follow in PSI_F_FRAG
                               * messages (src/kv/train.c) */
    PSI_F_FRAG = 1u << 8,     /* DATA: a fragment of a train's values */
    PSI_F_ALL = (1u << 9) - 1
};

/* The decoded header. */
typedef struct psi_hdr {
    uint8_t version;
    uint8_t type;
    uint16_t flags;
    uint32_t table;
    uint32_t sender;
    uint32_t receiver;
    uint32_t epoch;
    uint64_t timestamp;
    uint64_t key_lo, key_hi;
    uint64_t key_count;
    uint8_t filters[PSI_MAX_FILTERS];
    uint64_t seg_len[PSI_NSEG];
    uint32_t arg;
} psi_hdr;

/*
 * A message in memory: the header plus one buffer per segment.  A segment
 * buffer is owned by the message (freed by psi_msg_free) unless the bit for
 * it is set in `borrowed`.
 */
typedef struct psi_msg {
    psi_hdr hdr;
    void *seg[PSI_NSEG];
    unsigned borrowed; /* bit i set: seg[i] is not freed with the message */
    /* Called once by psi_msg_free, after the owned segments are freed: lets
     * borrowed segments hold a reference on a shared buffer.  Not copied by
     * psi_msg_dup. */
    void (*on_free)(void *arg);
    void *on_free_arg;
} psi_msg;

/* Allocate a zeroed message with version and type set; NULL on no memory. */
psi_msg *psi_msg_new(psi_msg_type type);
/* Free the message and the segments it owns.  NULL is fine. */
void psi_msg_free(psi_msg *m);
/* Deep copy (all segments owned by the copy); NULL on no memory. */
psi_msg *psi_msg_dup(const psi_msg *m);
/*
 * Attach a copy of `len` bytes as segment `seg`, replacing what was there.
 * Sets hdr.seg_len[seg].  Returns 0 or PS_ERR_NOMEM.
 */
int psi_msg_set_seg(psi_msg *m, int seg, const void *data, size_t len);
/* Sum of the segment lengths (the payload bytes after the header). */
uint64_t psi_msg_payload_len(const psi_hdr *h);

/* Encode the header into exactly PSI_HDR_SIZE bytes, computing the CRC. */
void psi_hdr_encode(const psi_hdr *h, uint8_t out[PSI_HDR_SIZE]);
/*
 * Decode and validate a header from `len` bytes (must be PSI_HDR_SIZE for a
 * standalone header).  Checks magic, version, CRC, type, flags, each segment
 * length and their sum against `max_payload`, and key_count against the keys
 * segment.  Returns 0 or PS_ERR_PROTO / PS_ERR_TOOBIG; allocates nothing.
 */
int psi_hdr_decode(const uint8_t *buf, size_t len, uint64_t max_payload,
                   psi_hdr *out);

/* Bytes a frame of this message takes: header plus payload. */
size_t psi_frame_size(const psi_msg *m);
/*
 * Encode `m` as one contiguous frame into `out` of `cap` bytes.  Returns the
 * frame size, or PS_ERR_TOOBIG if `cap` is too small.
 */
long psi_frame_encode(const psi_msg *m, uint8_t *out, size_t cap);
/*
 * Decode a contiguous frame of exactly `len` bytes.  Validates the header as
 * psi_hdr_decode does and that header + payload == len, then allocates a
 * message with copies of the segments.  On success *out owns everything and
 * the caller frees it with psi_msg_free.  Returns 0, PS_ERR_PROTO,
 * PS_ERR_TOOBIG or PS_ERR_NOMEM; *out is NULL on failure.
 */
int psi_frame_decode(const uint8_t *buf, size_t len, uint64_t max_payload,
                     psi_msg **out);

/* Name of a message type for logs ("JOIN", ...); "?" when unknown. */
const char *psi_msg_type_name(int type);

#endif /* PSI_WIRE_MSG_H */
