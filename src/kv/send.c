/*
 * send.c -- a table's messages out and in: psi_kv_send (a push marked as a
 * train goes as its head, then its values in fragments of PS_PUSH_FRAG
 * bytes: train.c has the protocol), the server's replies, and the traffic
 * counters around the filters (psi_kv_count_*, psi_kv_decode).
 *
 * Threads: psi_kv_send runs on application threads and the timer, without
 * the table lock; a train's messages go out under send_mu, one run at a
 * time, so no other message of this node splits a train on its
 * connection.  The others run under the table lock.
 *
 * Never: send a reply through the filters unless it carries values and
 * status 0; let a fragment outlive the buffer it borrows (each holds a
 * reference to it).
 */
#include <stdlib.h>
#include <string.h>

#include "kv/worker.h"
#include "node/node.h"
#include "util/log.h"
#include "util/util.h"

static pthread_mutex_t send_mu = PTHREAD_MUTEX_INITIALIZER; /* a train's messages in one run */

/* ---- out ------------------------------------------------------------------------ */

int psi_kv_send(uint32_t to, psi_msg *m)
{
    if (!(m->hdr.flags & PSI_F_TRAIN) || !m->hdr.seg_len[PSI_SEG_VALS])
        return psi_kv_net(to, m);
    kv_buf *buf = m->on_free_arg;
    const uint8_t *vals = m->seg[PSI_SEG_VALS];
    uint64_t total = m->hdr.seg_len[PSI_SEG_VALS], f = psi_kv_train_frag_bytes();
    uint64_t seq = psi_get_u64(m->seg[PSI_SEG_AUX]);
    psi_hdr h = m->hdr;
    m->seg[PSI_SEG_VALS] = NULL;
    m->hdr.seg_len[PSI_SEG_VALS] = 0;
    m->borrowed &= ~(1u << PSI_SEG_VALS);
    atomic_fetch_add(&buf->refs, 1); /* the head may be answered, and freed, at once */
    pthread_mutex_lock(&send_mu);
    int rv = psi_kv_net(to, m);
    for (uint64_t off = 0; rv == 0 && off < total; off += f) {
        psi_msg *fr = psi_msg_new(PSI_MSG_DATA);
        if (!fr) break; /* the server waits, then the worker resends the push */
        fr->hdr.flags = PSI_F_REQUEST | PSI_F_PUSH | PSI_F_FRAG;
        fr->hdr.table = h.table;
        fr->hdr.timestamp = h.timestamp;
        fr->hdr.key_lo = fr->hdr.key_hi = seq;
        fr->hdr.arg = (uint32_t)off;
        fr->seg[PSI_SEG_VALS] = (void *)(vals + off);
        fr->hdr.seg_len[PSI_SEG_VALS] = PSI_MIN(f, total - off);
        fr->borrowed = 1u << PSI_SEG_VALS;
        atomic_fetch_add(&buf->refs, 1);
        fr->on_free = psi_kv_buf_unref;
        fr->on_free_arg = buf;
        rv = psi_kv_net(to, fr);
    }
    pthread_mutex_unlock(&send_mu);
    psi_kv_buf_unref(buf);
    return rv;
}

void psi_kv_reply_msg(ps_table *t, const psi_msg *req, psi_msg *m)
{
    m->hdr.flags = (uint16_t)(PSI_F_RESPONSE |
                              (req->hdr.flags & (PSI_F_PUSH | PSI_F_PULL | PSI_F_REPL)));
    m->hdr.table = req->hdr.table;
    m->hdr.timestamp = req->hdr.timestamp;
    m->hdr.key_lo = req->hdr.key_lo; /* with the timestamp, names the slice answered */
    m->hdr.key_hi = req->hdr.key_hi;
    /* ... and, for an answer without values, the push's aux: two empty slices
     * of one request to one server (its own BSP part and one moved here) */
    if ((req->hdr.flags & PSI_F_PUSH) && req->hdr.seg_len[PSI_SEG_AUX] == PSI_PUSH_AUX &&
        !m->hdr.seg_len[PSI_SEG_VALS] && !m->hdr.seg_len[PSI_SEG_AUX] &&
        psi_msg_set_seg(m, PSI_SEG_AUX, req->seg[PSI_SEG_AUX], PSI_PUSH_AUX) != 0)
        m->hdr.arg = (uint32_t)PS_ERR_NOMEM;
    if (t && m->hdr.arg == 0 && m->hdr.seg_len[PSI_SEG_VALS]) {
        m->hdr.key_count = 0; /* an answer carries values only */
        psi_kv_count_sent(t, m, 0);
        if (psi_chain_encode(t->chain, req->hdr.sender, m) != 0) {
            psi_msg_free(m); /* the worker resends its request */
            return;
        }
        psi_kv_count_sent(t, m, 1);
    }
    psi_kv_net(req->hdr.sender, m);
}

void psi_kv_reply(ps_table *t, const psi_msg *req, int status, const void *vals, size_t len)
{
    psi_msg *m = psi_msg_new(PSI_MSG_DATA);
    if (!m) return;
    m->hdr.arg = (uint32_t)status;
    if (status == 0 && len && psi_msg_set_seg(m, PSI_SEG_VALS, vals, len) != 0)
        m->hdr.arg = (uint32_t)PS_ERR_NOMEM;
    psi_kv_reply_msg(t, req, m);
}

/* ---- traffic -------------------------------------------------------------------- */

static uint64_t msg_bytes(const psi_msg *m) { return PSI_HDR_SIZE + psi_msg_payload_len(&m->hdr); }

void psi_kv_count_sent(ps_table *t, const psi_msg *m, int wire)
{
    if (wire) {
        t->traffic.bytes_sent_wire += msg_bytes(m);
        return;
    }
    t->traffic.msgs_sent++;
    t->traffic.keys_sent += m->hdr.key_count;
    t->traffic.bytes_sent_raw += msg_bytes(m);
}

void psi_kv_count_recv(ps_table *t, const psi_msg *m, int wire)
{
    if (wire) {
        t->traffic.msgs_recv++;
        t->traffic.bytes_recv_wire += msg_bytes(m);
        return;
    }
    t->traffic.keys_recv += m->hdr.key_count;
    t->traffic.bytes_recv_raw += msg_bytes(m);
}

int psi_kv_decode(ps_table *t, psi_msg *m)
{
    psi_kv_count_recv(t, m, 1);
    int rv = psi_chain_decode(t->chain, m->hdr.sender, m);
    if (rv == 0) {
        psi_kv_count_recv(t, m, 0);
    } else if (rv != PSI_ERR_KEYCACHE_MISS) {
        t->traffic.filter_errors++;
        PSI_WARN("table %s: message from node %u failed its filters: %s", t->name,
                 m->hdr.sender, ps_strerror(rv));
    }
    return rv;
}
