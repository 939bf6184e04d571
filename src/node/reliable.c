/*
 * reliable.c -- see reliable.h.  Pending copies live in a singly linked
 * list (control traffic is a handful of messages at a time); the duplicate
 * filter is an array of per-sender windows indexed by node id.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "node/reliable.h"
#include "node/view.h"
#include "ps/ps.h"

#define WINDOW 4096
#define RESEND_FIRST_MS 20
#define RESEND_MAX_MS 500

typedef struct pending {
    struct pending *next;
    uint32_t peer;
    uint64_t ts;
    uint64_t due_ms, backoff_ms;
    psi_msg *copy;
} pending;

typedef struct window {
    int used;
    uint64_t base;                /* every ts < base has been seen */
    uint64_t bits[WINDOW / 64];   /* bit i: base + i seen */
} window;

struct psi_rel {
    uint64_t next_ts;
    pending *head;
    window **win;
    size_t nwin;
};

psi_rel *psi_rel_new(void)
{
    psi_rel *r = calloc(1, sizeof(*r));
    struct timeval tv;
    if (!r) return NULL;
    gettimeofday(&tv, NULL);
    r->next_ts = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
    return r;
}

void psi_rel_free(psi_rel *r)
{
    if (!r) return;
    while (r->head) {
        pending *p = r->head;
        r->head = p->next;
        psi_msg_free(p->copy);
        free(p);
    }
    for (size_t i = 0; i < r->nwin; i++) free(r->win[i]);
    free(r->win);
    free(r);
}

int psi_rel_track(psi_rel *r, uint32_t peer, psi_msg *m, uint64_t now_ms)
{
    pending *p = calloc(1, sizeof(*p));
    if (!p) return PS_ERR_NOMEM;
    m->hdr.timestamp = r->next_ts++;
    m->hdr.flags |= PSI_F_RELIABLE;
    if (!(p->copy = psi_msg_dup(m))) {
        free(p);
        return PS_ERR_NOMEM;
    }
    p->peer = peer;
    p->ts = m->hdr.timestamp;
    p->backoff_ms = RESEND_FIRST_MS;
    p->due_ms = now_ms + p->backoff_ms;
    p->next = r->head;
    r->head = p;
    return PS_OK;
}

/* Unlink and free every pending entry for which match() is true. */
static int remove_if(psi_rel *r, int (*match)(const pending *, uint32_t, uint64_t),
                     uint32_t peer, uint64_t ts)
{
    int n = 0;
    for (pending **pp = &r->head; *pp;) {
        pending *p = *pp;
        if (match(p, peer, ts)) {
            *pp = p->next;
            psi_msg_free(p->copy);
            free(p);
            n++;
        } else {
            pp = &p->next;
        }
    }
    return n;
}

static int match_ack(const pending *p, uint32_t peer, uint64_t ts)
{
    return p->peer == peer && p->ts == ts;
}

static int match_peer(const pending *p, uint32_t peer, uint64_t ts)
{
    (void)ts;
    return p->peer == peer;
}

int psi_rel_acked(psi_rel *r, uint32_t peer, uint64_t ts)
{
    return remove_if(r, match_ack, peer, ts) > 0;
}

void psi_rel_forget_peer(psi_rel *r, uint32_t peer) { remove_if(r, match_peer, peer, 0); }

int psi_rel_resend_due(psi_rel *r, uint64_t now_ms,
                       void (*send)(void *arg, uint32_t peer, psi_msg *m), void *arg)
{
    int n = 0;
    for (pending *p = r->head; p; p = p->next) {
        if (p->due_ms > now_ms) continue;
        p->backoff_ms = p->backoff_ms * 2 > RESEND_MAX_MS ? RESEND_MAX_MS : p->backoff_ms * 2;
        p->due_ms = now_ms + p->backoff_ms;
        psi_msg *m = psi_msg_dup(p->copy);
        if (m) {
            send(arg, p->peer, m);
            n++;
        }
    }
    return n;
}

size_t psi_rel_pending(const psi_rel *r, uint32_t peer)
{
    size_t n = 0;
    for (const pending *p = r->head; p; p = p->next)
        if (peer == 0xFFFFFFFFu || p->peer == peer) n++;
    return n;
}

static window *window_for(psi_rel *r, uint32_t sender)
{
    if (sender >= PSI_MAX_NODES) return NULL; /* not a node id: cannot track */
    if (sender >= r->nwin) {
        size_t n = (size_t)sender + 16;
        window **w = realloc(r->win, n * sizeof(*w));
        if (!w) return NULL;
        memset(w + r->nwin, 0, (n - r->nwin) * sizeof(*w));
        r->win = w;
        r->nwin = n;
    }
    if (!r->win[sender]) r->win[sender] = calloc(1, sizeof(window));
    return r->win[sender];
}

/* Slide the window so that base + WINDOW > ts, forgetting what falls off. */
static void window_slide(window *w, uint64_t new_base)
{
    uint64_t shift = new_base - w->base;
    if (shift >= WINDOW) {
        memset(w->bits, 0, sizeof(w->bits));
    } else {
        for (uint64_t i = 0; i < WINDOW; i++) {
            uint64_t j = i + shift;
            int v = j < WINDOW ? (int)((w->bits[j / 64] >> (j % 64)) & 1) : 0;
            if (v) w->bits[i / 64] |= 1ull << (i % 64);
            else w->bits[i / 64] &= ~(1ull << (i % 64));
        }
    }
    w->base = new_base;
}

int psi_rel_seen(psi_rel *r, uint32_t sender, uint64_t ts)
{
    window *w = window_for(r, sender);
    if (!w) return -1;
    if (!w->used) { /* the first message centres the window: earlier ones
                       * that were overtaken still count as new */
        w->used = 1;
        w->base = ts > WINDOW / 2 ? ts - WINDOW / 2 : 0;
    }
    if (ts < w->base) return 1;
    if (ts - w->base >= WINDOW) window_slide(w, ts - WINDOW + 1);
    uint64_t i = ts - w->base;
    if ((w->bits[i / 64] >> (i % 64)) & 1) return 1;
    w->bits[i / 64] |= 1ull << (i % 64);
    return 0;
}
