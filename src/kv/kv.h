/*
 * kv.h -- every internal header of the key-value layer at once, for code
 * that needs both halves of a table (tests/apps/ps_kvtest.c).  A file that needs less includes less:
 *
 *   kv/table.h     the table object, registry, ring and chains, replies;
 *   kv/push_aux.h  the push's and forward's aux segment (wire codec);
 *   kv/worker.h    the worker half (worker.c, move.c, zcopy.c, var.c, send.c);
 *   kv/server.h    the server half (server.c, bsp.c, train.c, var.c);
 *   kv/kv_repl.h   the replication plug-in's ops, and all it may call of kv
 *                  (src/replica includes only this one of kv's headers).
 *
 * Lock order: registry lock, then a table's lock, then the task queue's.
 */
#ifndef PSI_KV_KV_H
#define PSI_KV_KV_H

#include "kv/kv_repl.h"
#include "kv/push_aux.h"
#include "kv/server.h"
#include "kv/table.h"
#include "kv/worker.h"

#endif /* PSI_KV_KV_H */
