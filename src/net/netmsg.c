/*
 * netmsg.c -- what the transports share on receive: the message a
 * validated header becomes, with one block for its whole payload.
 *
 * Every segment starts at a multiple of 8 bytes from the block when the
 * segments before it are (keys always are).  The block comes from the
 * large-buffer cache (psi_buf_alloc), so receiving a stream of big messages
 * reuses the same pages.
 */
#include "net/transport.h"
#include "util/util.h"

psi_msg *psi_net_msg_alloc(const psi_hdr *h, uint8_t **block)
{
    psi_msg *m = psi_msg_new((psi_msg_type)h->type);
    uint64_t len = psi_msg_payload_len(h);
    if (!m) return NULL;
    m->hdr = *h;
    *block = NULL;
    if (!len) return m;
    if (!(*block = psi_buf_alloc(len))) {
        psi_msg_free(m);
        return NULL;
    }
    uint8_t *p = *block;
    for (int i = 0; i < PSI_NSEG; i++) {
        m->seg[i] = h->seg_len[i] ? p : NULL;
        p += h->seg_len[i];
    }
    m->borrowed = (1u << PSI_NSEG) - 1;
    m->on_free = psi_buf_free;
    m->on_free_arg = *block;
    return m;
}
