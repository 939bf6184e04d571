/*
 * netmsg.c -- what the transports share: the message a validated header
 * becomes, with one block for its whole payload; the caller-side set of
 * known peers; name resolution.
 *
 * Every segment starts at a multiple of 8 bytes from the block when the
 * segments before it are (keys always are).  The block comes from the
 * large-buffer cache (psi_buf_alloc), so receiving a stream of big messages
 * reuses the same pages.
 */
#include <netdb.h>
#include <string.h>

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

int psi_net_track_known(psi_idmap *known, psi_net_op op, uint32_t peer)
{
    switch (op) {
    case PSI_NET_SEND: return psi_idmap_has(known, peer) ? PS_OK : PS_ERR_NOTFOUND;
    case PSI_NET_CONNECT: return psi_idmap_put(known, peer, NULL);
    case PSI_NET_DISCONNECT: psi_idmap_del(known, peer); return PS_OK;
    default: return PS_OK;
    }
}

int psi_net_resolve(const char *addr, struct sockaddr_in *sa)
{
    char host[256];
    int port;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
    if (psi_split_hostport(addr, host, sizeof(host), &port) != 0) return PS_ERR_INVAL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res) return PS_ERR_INVAL;
    memcpy(sa, res->ai_addr, sizeof(*sa));
    sa->sin_port = htons((uint16_t)port);
    freeaddrinfo(res);
    return PS_OK;
}
