/*
 * ckpt.c -- checkpoints of pslinear's BPG model and --resume (ps/checkpoint.h).
 *
 * --checkpoint-dir D --checkpoint-every N: after iteration t with (t + 1) % N
 * == 0 (t counts from 0, as the progress lines do), the scheduler, once every
 * "iter" call up to t has returned and before it sends t + 1 (with --tau > 0
 * its loop first gathers every outstanding call), writes checkpoint t of
 * table "w" (each key's weight and last curvature) into D with ps_checkpoint
 * and prints one line.  The servers serve checkpoints of every table they
 * open, so a fresh run needs nothing else.
 *
 * --resume D: every server restores "w" (ps_table_restore) from the newest
 * complete and valid checkpoint in D right after opening it, before the
 * barrier that lets the workers start; the scheduler finds that checkpoint's
 * iteration I with ps_checkpoint_latest and asks every server which one it
 * restored ("restored"), then every worker pulls the weights of its shard's
 * keys and rebuilds its margins x_i.w from them ("resume", bpg.c) -- shards
 * follow the new number of workers, keys the new number of servers -- and
 * iterations go on at I + 1, on block (I + 1) % B as if never interrupted.
 * The objective's norms are read from the servers' tables ("wstat"), so they
 * include the restored weights.
 *
 * Must never: checkpoint while an "iter" call is outstanding; let a worker
 * push before the servers restored; go on from an iteration some server did
 * not restore.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lin.h"

#define NO_ITER UINT64_MAX

/* Server: the iteration restored; scheduler: the newest complete checkpoint's. */
static uint64_t restored = NO_ITER;

int lin_ckpt_open(const lin_cfg *c, ps_table *w)
{
    int role = ps_my_role(), rv;
    uint64_t it;
    if (!c->resume || role == PS_ROLE_WORKER) return 0;
    if (role == PS_ROLE_SERVER) rv = ps_table_restore(w, c->resume, &it);
    else rv = ps_checkpoint_latest(c->resume, &it);
    if (rv == PS_ERR_NOTFOUND)
        fprintf(stderr, "pslinear: --resume %s: no complete checkpoint of table w there\n",
                c->resume);
    else if (rv != 0)
        fprintf(stderr, "pslinear: --resume %s: cannot restore table w: %s\n", c->resume,
                ps_strerror(rv));
    else restored = it;
    return rv;
}

/* "restored" (servers): the iteration this server restored, u64 (NO_ITER: none). */
int lin_ckpt_restored(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
                      size_t *reply_len)
{
    (void)arg, (void)caller, (void)req, (void)len;
    uint64_t *r = malloc(sizeof *r);
    if (!r) return PS_ERR_NOMEM;
    *r = restored;
    *reply = r;
    *reply_len = sizeof *r;
    return 0;
}

/* Every server restored iteration `want`; 0, or PS_ERR_STATE (printed). */
static int check_servers(uint64_t want)
{
    const ps_reply *rep;
    int n, bad = 0;
    int64_t ts = ps_call_group(PS_GROUP_SERVERS, "restored", NULL, 0, NULL);
    int rv = ts < 0 ? (int)ts : ps_call_wait(ts, &rep, &n);
    for (int i = 0; rv == 0 && i < n && !bad; i++) {
        uint64_t got = NO_ITER;
        if (rep[i].len == sizeof got) memcpy(&got, rep[i].data, sizeof got);
        if ((bad = got != want))
            fprintf(stderr, "pslinear: --resume: server node %u restored %s %" PRIu64 ", the "
                    "newest complete checkpoint is %" PRIu64 " (was one written meanwhile?)\n",
                    rep[i].node, got == NO_ITER ? "no iteration" : "iteration",
                    got == NO_ITER ? 0 : got, want);
    }
    if (ts >= 0) ps_call_release(ts);
    if (rv != 0) fprintf(stderr, "pslinear: --resume: asking the servers: %s\n", ps_strerror(rv));
    return rv ? rv : bad ? PS_ERR_STATE : 0;
}

int lin_ckpt_resume(const lin_cfg *c, int *start)
{
    lin_kw *all;
    size_t n;
    *start = 0;
    if (!c->resume) return 0;
    uint64_t it = restored;
    if (it >= (uint64_t)c->iters - 1) {
        fprintf(stderr, "pslinear: --resume %s: its checkpoint of iteration %" PRIu64
                " already covers --iters %d\n", c->resume, it, c->iters);
        return PS_ERR_INVAL;
    }
    int rv = check_servers(it);
    if (rv == 0 && (rv = lin_gather_model("resume", &all, &n)) != 0)
        fprintf(stderr, "pslinear: --resume: a worker failed to rebuild its margins: %s\n",
                ps_strerror(rv));
    if (rv != 0) return rv;
    free(all);
    printf("resume: from the checkpoint of iteration %" PRIu64 " in %s (nnz %zu); next "
           "iteration %" PRIu64 ", block %" PRIu64 "\n", it, c->resume, n, it + 1,
           (it + 1) % (uint64_t)c->blocks);
    fflush(stdout);
    *start = (int)it + 1;
    return 0;
}

int lin_ckpt_due(const lin_cfg *c, int t)
{
    return c->ckpt_every > 0 && (t + 1) % c->ckpt_every == 0;
}

int lin_ckpt_write(const lin_cfg *c, int t)
{
    double t0 = lin_now();
    int rv = ps_checkpoint(c->ckpt_dir, (uint64_t)t);
    double secs = lin_now() - t0;
    if (rv != 0) {
        fprintf(stderr, "pslinear: checkpoint of iteration %d into %s failed: %s\n", t,
                c->ckpt_dir, ps_strerror(rv));
        return rv;
    }
    printf("checkpoint %4d  written to %s in %.3fs\n", t, c->ckpt_dir, secs);
    if (c->json) printf("{\"checkpoint\": %d, \"seconds\": %.6f}\n", t, secs);
    fflush(stdout);
    return 0;
}
