/*
 * status_http.c -- the status page's HTTP server (libmicrohttpd) and its
 * guard (see status.h).
 *
 * Design: every request takes a fresh snapshot through the snapshot
 * function (node.c: the view copied under po.lock, then the reports copied
 * under the store's leaf lock) and renders it (status.c) with no lock held,
 * into a buffer MHD frees once sent.  Beyond loopback (or with
 * PS_STATUS_AUTH=1) a request must carry the cluster secret as its Basic
 * auth password: the password is turned into a key the way the cluster's
 * handshake does (gate.h) and compared in constant time, so the secret
 * itself is never kept.
 *
 * Threads: MHD's one internal thread runs the handler.  The listening
 * socket is opened here (so a port in use is reported with its errno,
 * naming PS_STATUS) and handed to MHD, which closes it when stopped.
 *
 * Lock order: MHD's internal locks, then whatever the snapshot function
 * takes (po.lock, then the store's lock).  So psi_status_stop, which waits
 * for MHD's thread, must never be called with po.lock held.
 *
 * Never: render while holding a lock; answer a request that must prove the
 * secret and did not.
 */
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sodium.h>
#include <sys/socket.h>

#include "node/status.h"
#include "util/log.h"
#include "util/util.h"

/* ---- configuration and guard ------------------------------------------------------------ */

/* Resolve an IPv4 host ("localhost" too) into *out.  0 or PS_ERR_CONFIG. */
static int resolve(const char *host, struct sockaddr_in *out)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res) return PS_ERR_CONFIG;
    memcpy(out, res->ai_addr, sizeof(*out));
    freeaddrinfo(res);
    return PS_OK;
}

int psi_status_config(const char *spec, const psi_gate_key *key, int insecure, int force_auth,
                      psi_status_opts *out)
{
    struct sockaddr_in sa;
    memset(out, 0, sizeof(*out));
    if (psi_split_hostport(spec, out->host, sizeof(out->host), &out->port) != 0 ||
        !out->host[0]) {
        PSI_ERROR("PS_STATUS=\"%s\": expected host:port (for example 127.0.0.1:8080; port 0 "
                  "picks a free one)", spec);
        return PS_ERR_CONFIG;
    }
    if (resolve(out->host, &sa) != 0) {
        PSI_ERROR("PS_STATUS=\"%s\": %s is not an IPv4 address or a name of one", spec,
                  out->host);
        return PS_ERR_CONFIG;
    }
    int loopback = (ntohl(sa.sin_addr.s_addr) >> 24) == 127;
    if (!loopback && !key->secret && !insecure) {
        PSI_ERROR("PS_STATUS=%s: the status page would be open beyond loopback and no cluster "
                  "secret is set to guard it: set PS_SECRET (the page then asks for it as the "
                  "password), bind it to 127.0.0.1, or set PS_INSECURE=1 on a network you "
                  "trust", spec);
        return PS_ERR_CONFIG;
    }
    if (force_auth && !key->secret) {
        PSI_ERROR("PS_STATUS_AUTH=1 needs the cluster secret (PS_SECRET or PS_SECRET_FILE)");
        return PS_ERR_CONFIG;
    }
    out->need_auth = key->secret && (!loopback || force_auth);
    out->key = *key;
    return PS_OK;
}

/* ---- the HTTP server -------------------------------------------------------------------- */

struct psi_status_server {
    struct MHD_Daemon *d;
    psi_status_opts o;
    psi_status_snap_fn fn;
    void *arg;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, const char *type,
                             char *body, size_t len, int auth_fail)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer_with_free_callback(len, body, free);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'none'; style-src 'unsafe-inline'; img-src data:");
    enum MHD_Result rv = auth_fail ? MHD_queue_basic_auth_fail_response(c, "libps", r)
                                   : MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return rv;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned code, const char *text,
                                  int auth_fail)
{
    char *body = strdup(text);
    if (!body) return MHD_NO;
    return reply(c, code, "text/plain; charset=utf-8", body, strlen(body), auth_fail);
}

/* Whether the request proves the cluster secret (Basic auth, any user). */
static int authorized(const psi_status_server *s, struct MHD_Connection *c)
{
    char *pass = NULL, *user;
    if (!s->o.need_auth) return 1;
    user = MHD_basic_auth_get_username_password(c, &pass);
    int ok = 0;
    if (user && pass) {
        psi_gate_key k;
        psi_gate_key_derive(&k, pass, strlen(pass));
        ok = sodium_memcmp(k.k, s->o.key.k, sizeof(k.k)) == 0;
        sodium_memzero(&k, sizeof(k));
        sodium_memzero(pass, strlen(pass));
    }
    if (user) MHD_free(user);
    if (pass) MHD_free(pass);
    return ok;
}

typedef char *(*render_fn)(const psi_status_snap *, size_t *);

static const struct {
    const char *path, *type;
    render_fn render;
} pages[] = {
    {"/", "text/html; charset=utf-8", psi_status_html},
    {"/index.html", "text/html; charset=utf-8", psi_status_html},
    {"/status.json", "application/json", psi_status_json},
    {"/metrics", "text/plain; version=0.0.4; charset=utf-8", psi_status_metrics},
};

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_len, void **con)
{
    (void)version, (void)upload, (void)upload_len, (void)con;
    psi_status_server *s = cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n", 0);
    if (!authorized(s, c))
        return reply_text(c, MHD_HTTP_UNAUTHORIZED, "this page needs the cluster secret: HTTP "
                          "Basic auth, any user name, the secret (PS_SECRET) as password\n", 1);
    for (size_t i = 0; i < PSI_ARRAY_LEN(pages); i++) {
        if (strcmp(url, pages[i].path) != 0) continue;
        psi_status_snap snap;
        size_t len;
        if (s->fn(s->arg, &snap) != 0)
            return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "no snapshot (out of memory)\n", 0);
        char *body = pages[i].render(&snap, &len);
        psi_status_snap_free(&snap);
        if (!body) return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory\n", 0);
        return reply(c, MHD_HTTP_OK, pages[i].type, body, len, 0);
    }
    return reply_text(c, MHD_HTTP_NOT_FOUND, "not found: try /, /status.json or /metrics\n", 0);
}

static void mhd_log(void *arg, const char *fmt, va_list ap)
{
    char line[256];
    (void)arg;
    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\n")] = 0;
    PSI_INFO("status page: %s", line);
}

/* A listening socket on o's address; *port gets the port.  fd or -1 (logged). */
static int open_listener(const psi_status_opts *o, int *port)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int one = 1, fd = -1;
    if (resolve(o->host, &sa) != 0) goto fail;
    sa.sin_port = htons((uint16_t)o->port);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        goto fail;
    *port = ntohs(sa.sin_port);
    return fd;
fail:
    PSI_ERROR("PS_STATUS=%s:%d: cannot listen there: %s%s", o->host, o->port, strerror(errno),
              errno == EADDRINUSE ? " (another program, or another job's page, has the port: "
                                    "choose another)" : "");
    if (fd >= 0) close(fd);
    return -1;
}

int psi_status_start(const psi_status_opts *o, psi_status_snap_fn fn, void *arg,
                     psi_status_server **out, int *port)
{
    psi_status_server *s = calloc(1, sizeof(*s));
    *out = NULL;
    if (!s) return PS_ERR_NOMEM;
    s->o = *o;
    s->fn = fn;
    s->arg = arg;
    int fd = open_listener(o, port);
    if (fd < 0) {
        free(s);
        return PS_ERR_CONFIG;
    }
    /* AUTO: epoll on Linux, so a scheduler holding over 1024 sockets still serves */
    s->d = MHD_start_daemon(MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                            on_request, s, MHD_OPTION_LISTEN_SOCKET, fd,
                            MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_CONNECTION_TIMEOUT, 10u,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
    if (!s->d) {
        PSI_ERROR("PS_STATUS=%s:%d: the HTTP server (libmicrohttpd) did not start", o->host,
                  o->port);
        close(fd);
        free(s);
        return PS_ERR_SYS;
    }
    *out = s;
    return PS_OK;
}

void psi_status_stop(psi_status_server *s)
{
    if (!s) return;
    MHD_stop_daemon(s->d); /* joins its thread, closes the listener */
    free(s);
}
