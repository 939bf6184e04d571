/*
 * beat.c -- the UDP heartbeats of beat.h.
 *
 * Threads: the scheduler's side runs one reader thread, blocked in poll(2)
 * on its socket with a 100 ms timeout to see the stop flag; it calls the
 * callback (which takes the node lock) and answers.  A node's side has no
 * thread: its timer sends and drains answers, non-blocking.
 *
 * Never: trust a datagram before its tag checks out; answer one that does
 * not (no reflection, no amplification: an answer is never larger than the
 * beat).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "node/beat.h"
#include "node/view.h"
#include "util/log.h"
#include "util/util.h"

#define BEAT_LEN 40
#define BEAT_BODY 24
#define BEAT_TAG 16
#define KIND_BEAT 0
#define KIND_ANSWER 1

struct psi_beat {
    int fd;
    psi_gate_key key;
    psi_beat_fn fn;
    void *arg;
    pthread_t thread;
    int thread_started;
    atomic_int stop;
    uint64_t seq;                      /* node: the last beat's */
    uint64_t *last;                    /* scheduler: last seq per node id */
};

static int resolve_udp(const char *addr, struct sockaddr_in *sa)
{
    char host[256];
    int port;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_DGRAM}, *res;
    if (psi_split_hostport(addr, host, sizeof(host), &port) != 0 || port == 0) return PS_ERR_INVAL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res) return PS_ERR_INVAL;
    memcpy(sa, res->ai_addr, sizeof(*sa));
    sa->sin_port = htons((uint16_t)port);
    freeaddrinfo(res);
    return PS_OK;
}

static void seal(const psi_beat *b, uint8_t d[BEAT_LEN])
{
    crypto_generichash(d + BEAT_BODY, BEAT_TAG, d, BEAT_BODY, b->key.k, sizeof(b->key.k));
}

static void encode(const psi_beat *b, uint8_t d[BEAT_LEN], int kind, uint32_t id, uint32_t epoch,
                   uint64_t seq)
{
    memcpy(d, "PSHB", 4);
    d[4] = 1;
    d[5] = (uint8_t)kind;
    d[6] = d[7] = 0;
    psi_put_u32(d + 8, id);
    psi_put_u32(d + 12, epoch);
    psi_put_u64(d + 16, seq);
    seal(b, d);
}

/* 0 if `d` is a well-formed datagram of `kind` whose tag checks out. */
static int check(const psi_beat *b, const uint8_t *d, ssize_t len, int kind)
{
    uint8_t want[BEAT_TAG];
    if (len != BEAT_LEN || memcmp(d, "PSHB", 4) != 0 || d[4] != 1 || d[5] != kind)
        return PS_ERR_PROTO;
    crypto_generichash(want, BEAT_TAG, d, BEAT_BODY, b->key.k, sizeof(b->key.k));
    return sodium_memcmp(want, d + BEAT_BODY, BEAT_TAG) == 0 ? PS_OK : PS_ERR_AUTH;
}

static psi_beat *beat_new(const psi_gate_key *key)
{
    psi_beat *b = calloc(1, sizeof(*b));
    if (!b) return NULL;
    b->key = *key;
    b->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (b->fd < 0) {
        free(b);
        return NULL;
    }
    return b;
}

/* ---- the scheduler's side ------------------------------------------------------- */

static void on_datagram(psi_beat *b, const uint8_t *d, ssize_t len, const struct sockaddr_in *from)
{
    if (check(b, d, len, KIND_BEAT) != 0) return;
    uint32_t id = psi_get_u32(d + 8), epoch = psi_get_u32(d + 12);
    uint64_t seq = psi_get_u64(d + 16);
    if (id == 0 || id >= PSI_MAX_NODES || seq <= b->last[id]) return;
    b->last[id] = seq;
    if (!b->fn(b->arg, id, epoch)) return;
    uint8_t out[BEAT_LEN];
    encode(b, out, KIND_ANSWER, id, epoch, seq);
    sendto(b->fd, out, sizeof(out), MSG_DONTWAIT, (const struct sockaddr *)from, sizeof(*from));
}

static void *reader(void *arg)
{
    psi_beat *b = arg;
    struct pollfd p = {.fd = b->fd, .events = POLLIN};
    while (!atomic_load(&b->stop)) {
        if (poll(&p, 1, 100) <= 0) continue;
        for (int i = 0; i < 256; i++) {
            uint8_t d[BEAT_LEN + 1];
            struct sockaddr_in from;
            socklen_t fl = sizeof(from);
            ssize_t r = recvfrom(b->fd, d, sizeof(d), MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
            if (r < 0) break;
            on_datagram(b, d, r, &from);
        }
    }
    return NULL;
}

int psi_beat_listen(const char *addr, const psi_gate_key *key, psi_beat_fn fn, void *arg,
                    psi_beat **out)
{
    struct sockaddr_in sa;
    psi_beat *b;
    *out = NULL;
    if (resolve_udp(addr, &sa) != 0) return PS_ERR_INVAL;
    if (!(b = beat_new(key))) return PS_ERR_SYS;
    b->fn = fn;
    b->arg = arg;
    if (!(b->last = calloc(PSI_MAX_NODES, sizeof(*b->last))) ||
        bind(b->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        PSI_WARN("heartbeats over UDP at %s are off (%s): TCP heartbeats only", addr,
                 b->last ? strerror(errno) : "out of memory");
        psi_beat_close(b);
        return PS_ERR_SYS;
    }
    if (pthread_create(&b->thread, NULL, reader, b) != 0) {
        psi_beat_close(b);
        return PS_ERR_SYS;
    }
    b->thread_started = 1;
    *out = b;
    return PS_OK;
}

/* ---- a node's side ------------------------------------------------------------- */

int psi_beat_open(const char *addr, const psi_gate_key *key, psi_beat **out)
{
    struct sockaddr_in sa;
    psi_beat *b;
    *out = NULL;
    if (resolve_udp(addr, &sa) != 0) return PS_ERR_INVAL;
    if (!(b = beat_new(key))) return PS_ERR_SYS;
    if (connect(b->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        psi_beat_close(b);
        return PS_ERR_SYS;
    }
    b->seq = psi_now_ns(); /* increasing across restarts on this host too */
    *out = b;
    return PS_OK;
}

void psi_beat_send(psi_beat *b, uint32_t id, uint32_t epoch)
{
    uint8_t d[BEAT_LEN];
    encode(b, d, KIND_BEAT, id, epoch, ++b->seq);
    send(b->fd, d, sizeof(d), MSG_DONTWAIT);
}

int psi_beat_poll(psi_beat *b, uint32_t id)
{
    int n = 0;
    for (int i = 0; i < 64; i++) {
        uint8_t d[BEAT_LEN + 1];
        ssize_t r = recv(b->fd, d, sizeof(d), MSG_DONTWAIT);
        if (r < 0) break;
        if (check(b, d, r, KIND_ANSWER) == 0 && psi_get_u32(d + 8) == id) n++;
    }
    return n;
}

void psi_beat_close(psi_beat *b)
{
    if (!b) return;
    atomic_store(&b->stop, 1);
    if (b->thread_started) pthread_join(b->thread, NULL);
    close(b->fd);
    free(b->last);
    free(b);
}
