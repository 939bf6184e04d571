/*
 * msg.c -- encode, decode and own libps messages: the fixed 104-byte header
 * of msg.h and the four segments that follow it.
 *
 * Design: the header is written and read field by field with the explicit
 * little-endian helpers of util.h at the offsets below, each of which is
 * static_assert'ed against its neighbour, the width of the psi_hdr field and
 * PSI_HDR_SIZE.  Decoding validates everything (length, magic, version, CRC,
 * type, flags, key range, every segment length against the cap, their sum
 * without overflow, key_count against the keys segment) before a single byte
 * is allocated; only psi_frame_decode allocates, one buffer per non-empty
 * segment, so a zero-length segment is always a NULL pointer.
 *
 * Never: cast a struct onto a buffer, trust a length before it is checked,
 * allocate on behalf of a frame that has not fully validated, leave *out
 * pointing at anything on failure, free a segment marked borrowed, or log
 * (the caller knows the peer and does the logging and counting).
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"
#include "wire/msg.h"

/* Wire offsets of the header fields; see the table in msg.h. */
#define PSI_OFF_MAGIC 0
#define PSI_OFF_VERSION 4
#define PSI_OFF_TYPE 5
#define PSI_OFF_FLAGS 6
#define PSI_OFF_TABLE 8
#define PSI_OFF_SENDER 12
#define PSI_OFF_RECEIVER 16
#define PSI_OFF_EPOCH 20
#define PSI_OFF_TIMESTAMP 24
#define PSI_OFF_KEY_LO 32
#define PSI_OFF_KEY_HI 40
#define PSI_OFF_KEY_COUNT 48
#define PSI_OFF_FILTERS 56
#define PSI_OFF_SEG_LEN 64
#define PSI_OFF_ARG 96
#define PSI_OFF_CRC 100

/* Width of a psi_hdr field: the wire field must be exactly as wide. */
#define HDR_W(f) sizeof(((psi_hdr *)0)->f)

_Static_assert(PSI_OFF_MAGIC == 0, "magic opens the header");
_Static_assert(PSI_OFF_VERSION == PSI_OFF_MAGIC + 4, "version offset");
_Static_assert(PSI_OFF_TYPE == PSI_OFF_VERSION + HDR_W(version), "type offset");
_Static_assert(PSI_OFF_FLAGS == PSI_OFF_TYPE + HDR_W(type), "flags offset");
_Static_assert(PSI_OFF_TABLE == PSI_OFF_FLAGS + HDR_W(flags), "table offset");
_Static_assert(PSI_OFF_SENDER == PSI_OFF_TABLE + HDR_W(table), "sender offset");
_Static_assert(PSI_OFF_RECEIVER == PSI_OFF_SENDER + HDR_W(sender), "receiver offset");
_Static_assert(PSI_OFF_EPOCH == PSI_OFF_RECEIVER + HDR_W(receiver), "epoch offset");
_Static_assert(PSI_OFF_TIMESTAMP == PSI_OFF_EPOCH + HDR_W(epoch), "timestamp offset");
_Static_assert(PSI_OFF_KEY_LO == PSI_OFF_TIMESTAMP + HDR_W(timestamp), "key_lo offset");
_Static_assert(PSI_OFF_KEY_HI == PSI_OFF_KEY_LO + HDR_W(key_lo), "key_hi offset");
_Static_assert(PSI_OFF_KEY_COUNT == PSI_OFF_KEY_HI + HDR_W(key_hi), "key_count offset");
_Static_assert(PSI_OFF_FILTERS == PSI_OFF_KEY_COUNT + HDR_W(key_count), "filters offset");
_Static_assert(HDR_W(filters) == PSI_MAX_FILTERS, "one byte per filter id");
_Static_assert(PSI_OFF_SEG_LEN == PSI_OFF_FILTERS + HDR_W(filters), "seg_len offset");
_Static_assert(HDR_W(seg_len) == 8 * PSI_NSEG, "a u64 per segment");
_Static_assert(PSI_OFF_ARG == PSI_OFF_SEG_LEN + HDR_W(seg_len), "arg offset");
_Static_assert(PSI_OFF_CRC == PSI_OFF_ARG + HDR_W(arg), "crc offset");
_Static_assert(PSI_OFF_CRC + 4 == PSI_HDR_SIZE, "crc closes the header");
_Static_assert(PSI_HDR_SIZE == 104, "header is 104 bytes");
_Static_assert(PSI_MSG_TYPE_MAX <= 256, "type fits its byte");
_Static_assert(PSI_F_ALL <= 0xFFFF, "flags fit their u16");
_Static_assert(PSI_NSEG <= 8 * sizeof(unsigned), "a borrowed bit per segment");

static const char *const type_names[PSI_MSG_TYPE_MAX] = {
    [PSI_MSG_INVALID] = "INVALID",     [PSI_MSG_JOIN] = "JOIN",
    [PSI_MSG_VIEW] = "VIEW",           [PSI_MSG_BARRIER] = "BARRIER",
    [PSI_MSG_BARRIER_DONE] = "BARRIER_DONE", [PSI_MSG_HEARTBEAT] = "HEARTBEAT",
    [PSI_MSG_ACK] = "ACK",             [PSI_MSG_LEAVE] = "LEAVE",
    [PSI_MSG_DATA] = "DATA",
    [PSI_MSG_CALL] = "CALL",           [PSI_MSG_SERVE] = "SERVE",
    [PSI_MSG_REPORT] = "REPORT",
};

const char *psi_msg_type_name(int type)
{
    if (type < 0 || type >= PSI_MSG_TYPE_MAX || !type_names[type]) return "?";
    return type_names[type];
}

/* ---- messages in memory -------------------------------------------------- */

static int seg_owned(const psi_msg *m, int i)
{
    return !(m->borrowed & (1u << i));
}

psi_msg *psi_msg_new(psi_msg_type type)
{
    psi_msg *m = calloc(1, sizeof(*m));

    if (!m) return NULL;
    m->hdr.version = PSI_WIRE_VERSION;
    m->hdr.type = (uint8_t)type;
    return m;
}

void psi_msg_free(psi_msg *m)
{
    if (!m) return;
    for (int i = 0; i < PSI_NSEG; i++)
        if (seg_owned(m, i)) free(m->seg[i]);
    if (m->on_free) m->on_free(m->on_free_arg);
    free(m);
}

/* A malloc'ed copy of `len` bytes, or NULL when len is 0 or memory is out. */
static void *copy_bytes(const void *data, size_t len)
{
    void *p;

    if (len == 0) return NULL;
    if ((p = malloc(len)) != NULL) memcpy(p, data, len);
    return p;
}

psi_msg *psi_msg_dup(const psi_msg *m)
{
    psi_msg *d = m ? psi_msg_new(PSI_MSG_INVALID) : NULL;

    if (!d) return NULL;
    d->hdr = m->hdr;
    for (int i = 0; i < PSI_NSEG; i++) {
        size_t len = m->seg[i] ? (size_t)m->hdr.seg_len[i] : 0;
        if (len && (d->seg[i] = copy_bytes(m->seg[i], len)) == NULL) {
            psi_msg_free(d);
            return NULL;
        }
    }
    return d;
}

/*
 * The copy is made before the old segment is released, so `data` may point
 * into the segment being replaced, and on PS_ERR_NOMEM nothing changes.
 */
int psi_msg_set_seg(psi_msg *m, int seg, const void *data, size_t len)
{
    void *copy;

    if (!m || seg < 0 || seg >= PSI_NSEG || (len && !data)) return PS_ERR_INVAL;
    copy = copy_bytes(data, len);
    if (len && !copy) return PS_ERR_NOMEM;
    if (seg_owned(m, seg)) free(m->seg[seg]);
    m->seg[seg] = copy;
    m->borrowed &= ~(1u << seg);
    m->hdr.seg_len[seg] = len;
    return PS_OK;
}

/* Saturates at UINT64_MAX, which no cap admits, instead of wrapping. */
uint64_t psi_msg_payload_len(const psi_hdr *h)
{
    uint64_t sum = 0;

    for (int i = 0; i < PSI_NSEG; i++) {
        if (h->seg_len[i] > UINT64_MAX - sum) return UINT64_MAX;
        sum += h->seg_len[i];
    }
    return sum;
}

/* ---- the header ------------------------------------------------------------ */

/* Writes h->version as given (psi_msg_new sets PSI_WIRE_VERSION). */
void psi_hdr_encode(const psi_hdr *h, uint8_t out[PSI_HDR_SIZE])
{
    psi_put_u32(out + PSI_OFF_MAGIC, PSI_WIRE_MAGIC);
    psi_put_u8(out + PSI_OFF_VERSION, h->version);
    psi_put_u8(out + PSI_OFF_TYPE, h->type);
    psi_put_u16(out + PSI_OFF_FLAGS, h->flags);
    psi_put_u32(out + PSI_OFF_TABLE, h->table);
    psi_put_u32(out + PSI_OFF_SENDER, h->sender);
    psi_put_u32(out + PSI_OFF_RECEIVER, h->receiver);
    psi_put_u32(out + PSI_OFF_EPOCH, h->epoch);
    psi_put_u64(out + PSI_OFF_TIMESTAMP, h->timestamp);
    psi_put_u64(out + PSI_OFF_KEY_LO, h->key_lo);
    psi_put_u64(out + PSI_OFF_KEY_HI, h->key_hi);
    psi_put_u64(out + PSI_OFF_KEY_COUNT, h->key_count);
    memcpy(out + PSI_OFF_FILTERS, h->filters, PSI_MAX_FILTERS);
    for (int i = 0; i < PSI_NSEG; i++)
        psi_put_u64(out + PSI_OFF_SEG_LEN + 8 * i, h->seg_len[i]);
    psi_put_u32(out + PSI_OFF_ARG, h->arg);
    psi_put_u32(out + PSI_OFF_CRC, psi_crc32c(out, PSI_OFF_CRC));
}

/* Reads every field; checks nothing.  `buf` holds PSI_HDR_SIZE bytes. */
static void hdr_read(const uint8_t *buf, psi_hdr *h)
{
    h->version = psi_get_u8(buf + PSI_OFF_VERSION);
    h->type = psi_get_u8(buf + PSI_OFF_TYPE);
    h->flags = psi_get_u16(buf + PSI_OFF_FLAGS);
    h->table = psi_get_u32(buf + PSI_OFF_TABLE);
    h->sender = psi_get_u32(buf + PSI_OFF_SENDER);
    h->receiver = psi_get_u32(buf + PSI_OFF_RECEIVER);
    h->epoch = psi_get_u32(buf + PSI_OFF_EPOCH);
    h->timestamp = psi_get_u64(buf + PSI_OFF_TIMESTAMP);
    h->key_lo = psi_get_u64(buf + PSI_OFF_KEY_LO);
    h->key_hi = psi_get_u64(buf + PSI_OFF_KEY_HI);
    h->key_count = psi_get_u64(buf + PSI_OFF_KEY_COUNT);
    memcpy(h->filters, buf + PSI_OFF_FILTERS, PSI_MAX_FILTERS);
    for (int i = 0; i < PSI_NSEG; i++)
        h->seg_len[i] = psi_get_u64(buf + PSI_OFF_SEG_LEN + 8 * i);
    h->arg = psi_get_u32(buf + PSI_OFF_ARG);
}

/* Is this a libps header at all, intact?  Magic, version, then CRC. */
static int check_ident(const uint8_t *buf)
{
    if (psi_get_u32(buf + PSI_OFF_MAGIC) != PSI_WIRE_MAGIC) return PS_ERR_PROTO;
    if (psi_get_u8(buf + PSI_OFF_VERSION) != PSI_WIRE_VERSION) return PS_ERR_PROTO;
    if (psi_get_u32(buf + PSI_OFF_CRC) != psi_crc32c(buf, PSI_OFF_CRC))
        return PS_ERR_PROTO;
    return PS_OK;
}

/* Type, flags and key range; all PS_ERR_PROTO. */
static int check_fields(const psi_hdr *h)
{
    if (h->type == PSI_MSG_INVALID || h->type >= PSI_MSG_TYPE_MAX) return PS_ERR_PROTO;
    if (h->flags & ~(unsigned)PSI_F_ALL) return PS_ERR_PROTO;
    if (h->key_lo > h->key_hi) return PS_ERR_PROTO;
    return PS_OK;
}

/*
 * Each segment and the running sum against `max_payload` (never adding past
 * it, so nothing wraps), then key_count against the keys segment by division
 * (8 * key_count could wrap).  A message that went through filters (a
 * nonzero filters[0]) carries its keys encoded: their count is checked by
 * the key-value layer once the filters are reversed.
 */
static int check_lengths(const psi_hdr *h, uint64_t max_payload)
{
    uint64_t sum = 0, keys = h->seg_len[PSI_SEG_KEYS];

    for (int i = 0; i < PSI_NSEG; i++) {
        if (h->seg_len[i] > max_payload - sum) return PS_ERR_TOOBIG;
        sum += h->seg_len[i];
    }
    if (h->filters[0] != 0) return PS_OK;
    if (keys % 8 != 0 || h->key_count != keys / 8) return PS_ERR_PROTO;
    return PS_OK;
}

/* Validates the PSI_HDR_SIZE bytes at `buf`; *out is written only on success. */
static int hdr_decode(const uint8_t *buf, uint64_t max_payload, psi_hdr *out)
{
    psi_hdr h;
    int rv;

    if ((rv = check_ident(buf)) != 0) return rv;
    hdr_read(buf, &h);
    if ((rv = check_fields(&h)) != 0) return rv;
    if ((rv = check_lengths(&h, max_payload)) != 0) return rv;
    *out = h;
    return PS_OK;
}

int psi_hdr_decode(const uint8_t *buf, size_t len, uint64_t max_payload,
                   psi_hdr *out)
{
    if (!out || (len && !buf)) return PS_ERR_INVAL;
    if (len != PSI_HDR_SIZE) return PS_ERR_PROTO;
    return hdr_decode(buf, max_payload, out);
}

/* ---- contiguous frames ----------------------------------------------------- */

/* Saturates at SIZE_MAX, which no buffer can hold, instead of wrapping. */
size_t psi_frame_size(const psi_msg *m)
{
    uint64_t payload = psi_msg_payload_len(&m->hdr);

    if (payload > (uint64_t)(SIZE_MAX - PSI_HDR_SIZE)) return SIZE_MAX;
    return PSI_HDR_SIZE + (size_t)payload;
}

/*
 * Also PS_ERR_INVAL for a message whose header claims bytes for a segment
 * that has no buffer (a bug in the caller, not something to send).
 */
long psi_frame_encode(const psi_msg *m, uint8_t *out, size_t cap)
{
    size_t size = psi_frame_size(m), off = PSI_HDR_SIZE;

    if (size > cap || size > (size_t)LONG_MAX) return PS_ERR_TOOBIG;
    for (int i = 0; i < PSI_NSEG; i++)
        if (m->hdr.seg_len[i] && !m->seg[i]) return PS_ERR_INVAL;
    psi_hdr_encode(&m->hdr, out);
    for (int i = 0; i < PSI_NSEG; i++) {
        size_t n = (size_t)m->hdr.seg_len[i];
        if (n) memcpy(out + off, m->seg[i], n);
        off += n;
    }
    return (long)size;
}

/* Copies the segments after a validated header; 0 or PS_ERR_NOMEM. */
static int frame_copy_segs(psi_msg *m, const uint8_t *payload)
{
    size_t off = 0;

    for (int i = 0; i < PSI_NSEG; i++) {
        size_t n = (size_t)m->hdr.seg_len[i];
        if (n && (m->seg[i] = copy_bytes(payload + off, n)) == NULL)
            return PS_ERR_NOMEM;
        off += n;
    }
    return PS_OK;
}

int psi_frame_decode(const uint8_t *buf, size_t len, uint64_t max_payload,
                     psi_msg **out)
{
    psi_hdr h;
    psi_msg *m;
    int rv;

    if (!out) return PS_ERR_INVAL;
    *out = NULL;
    if (len && !buf) return PS_ERR_INVAL;
    if (len < PSI_HDR_SIZE) return PS_ERR_PROTO;
    if ((rv = hdr_decode(buf, max_payload, &h)) != 0) return rv;
    if (psi_msg_payload_len(&h) != (uint64_t)(len - PSI_HDR_SIZE)) return PS_ERR_PROTO;
    if ((m = psi_msg_new((psi_msg_type)h.type)) == NULL) return PS_ERR_NOMEM;
    m->hdr = h;
    if ((rv = frame_copy_segs(m, buf + PSI_HDR_SIZE)) != 0) {
        psi_msg_free(m);
        return rv;
    }
    *out = m;
    return PS_OK;
}
