/*
 * ps/checkpoint.h -- checkpoints of the servers' tables to files, and resuming
 * a (possibly differently sized) cluster from the newest complete one.
 * Included by ps/ps.h.
 *
 * A checkpoint of iteration I is the folder DIR/ckpt-<I, 20 digits>/: one file
 * per (table, server), `<table>.<server rank>`, holding the keys that server
 * owned, each with its raw server block (values, then the update rule's
 * per-key state such as AdaGrad's n), in blocks that carry their own CRC32C,
 * and a MANIFEST written last that lists every file with its size and
 * checksum.  Every file is written under a temporary name, fsync'ed, renamed
 * and its folder fsync'ed, so a crash leaves either the old state or the
 * whole new file.  A folder without a valid MANIFEST is incomplete and is
 * never restored from; a torn or corrupt file makes the whole checkpoint
 * invalid, and restoring falls back to the previous one (with a warning
 * naming the file and the reason).
 *
 * DIR must be visible under the same path to the checkpointing node and to
 * every server (a local folder on one machine, or a shared file system).
 * Only fixed-width tables (width >= 1), sparse or dense, can be checkpointed.
 */
#ifndef PS_CHECKPOINT_H
#define PS_CHECKPOINT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* libps is built with -fvisibility=hidden: what is declared here is its ABI. */
#pragma GCC visibility push(default)

struct ps_table;

/*
 * Write checkpoint `iter` of every fixed-width table the servers have open
 * (a server enables checkpoints of each fixed-width table when it opens it;
 * variable-length tables are left out, and ps_table_restore is needed only
 * to load a checkpoint back) into DIR (created if missing; its parent must
 * exist).  Call it on one node that is not a server, normally the
 * scheduler, at an iteration boundary: the application guarantees that no
 * push is in flight and none starts until this returns (e.g.
 * ps_barrier(PS_GROUP_ALL) before and after).  Every live server writes the
 * keys it holds; then this node writes MANIFEST.  Returns 0 once the
 * checkpoint is complete and durable; otherwise a ps_err (logged with the
 * server, file and reason) and the checkpoint stays incomplete:
 * PS_ERR_NOTFOUND if a server has opened no fixed-width table (it then
 * serves no checkpoints), PS_ERR_SYS for a failed file operation,
 * PS_ERR_PEER if a server died meanwhile.  Writing an iteration again
 * replaces that checkpoint.
 */
int ps_checkpoint(const char *dir, uint64_t iter);

/*
 * Restore table `t` from the newest complete and valid checkpoint in DIR.
 * Every node that opened the table calls it right after ps_table_open and
 * before anyone pushes to the table (e.g. then ps_barrier(PS_GROUP_ALL)).  A
 * fresh start needs no call: ps_table_open already enabled checkpoints of
 * `t` on the servers.  A server loads, from the
 * files of every server of the checkpoint, the keys it now holds (the
 * current server set may differ in size); other nodes only find the
 * iteration.  Returns 0 and sets *iter_out (may be NULL) to the checkpoint's
 * iteration; PS_ERR_NOTFOUND (logged) when DIR holds no complete, valid
 * checkpoint, or the newest one has no file of this table; PS_ERR_INVAL for
 * a variable-length table or a checkpoint whose dtype, width or update rule
 * differs from the table's; PS_ERR_STATE if the table already holds keys;
 * PS_ERR_TOOBIG over the table's max_bytes.  On any error the table is left
 * as it was.
 */
int ps_table_restore(struct ps_table *t, const char *dir, uint64_t *iter_out);

/*
 * The iteration of the newest complete and valid checkpoint in DIR (every
 * file and block checked, as ps_table_restore does); usable on any node.
 * 0, or PS_ERR_NOTFOUND (logged) when there is none.
 */
int ps_checkpoint_latest(const char *dir, uint64_t *iter_out);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif /* PS_CHECKPOINT_H */
