/*
 * env.c -- the node's functions as the key-value core's environment
 * (env.h), and the switch a unit test uses to put its own in their place.
 */
#include "kv/env.h"
#include "node/node.h"
#include "util/util.h"

static uint64_t node_now_ms(void) { return psi_now_ms(); }

static const psi_kv_env node_env = {
    .send = psi_node_send,
    .now_ms = node_now_ms,
    .view = psi_node_view,
    .my_id = ps_my_id,
    .my_role = ps_my_role,
    .num_servers = ps_num_servers,
    .num_workers = ps_num_workers,
    .fatal = psi_node_fatal,
};

const psi_kv_env *psi_kv_env_now = &node_env;

void psi_kv_env_set(const psi_kv_env *e) { psi_kv_env_now = e ? e : &node_env; }
