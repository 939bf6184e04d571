/*
 * output.c -- turn the bytes of a node's pipe into whole, prefixed lines.
 *
 * Design: reads go into one shared scratch buffer; complete lines are
 * written straight from it with one writev (prefix + line), so lines of
 * different nodes never interleave mid-line.  Only the unfinished tail of a
 * line is copied into the stream's own buffer, which therefore stays empty
 * for line-oriented output and is freed again after a long line.  A line
 * longer than PSR_LINE_MAX is printed in pieces (the first with the prefix,
 * the rest without), so no byte is ever dropped and memory stays bounded; a
 * partial last line is printed at end of file with a newline added.  If
 * psrun's own stdout or stderr goes away (EPIPE), output to it is discarded
 * and the cluster keeps running.
 *
 * Must never: truncate or reorder a node's bytes, block on a node's pipe
 * (read ends are non-blocking), or buffer without bound.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "psrun.h"

#define PSR_LINE_MAX (1u << 20)  /* longest line kept whole */
#define PSR_KEEP_CAP (64u << 10) /* keep line buffers up to this size */

static char scratch[64 << 10];
static int out_broken[3]; /* indexed by fd 1 or 2 */

void psr_stream_init(psr_stream *s, int fd, int out)
{
    memset(s, 0, sizeof(*s));
    s->fd = fd;
    s->out = out;
}

/* Drop the first w bytes of iov[0..*n); returns the new first element. */
static struct iovec *iov_advance(struct iovec *iov, int *n, size_t w)
{
    while (*n > 0 && w >= iov->iov_len) {
        w -= iov->iov_len;
        iov++;
        (*n)--;
    }
    if (*n > 0) {
        iov->iov_base = (char *)iov->iov_base + w;
        iov->iov_len -= w;
    }
    return iov;
}

/* Write all of iov to fd, waiting out EINTR and a non-blocking fd. */
static void write_all(int fd, struct iovec *iov, int n)
{
    while (n > 0 && !out_broken[fd]) {
        ssize_t w = writev(fd, iov, n);
        if (w >= 0) {
            iov = iov_advance(iov, &n, (size_t)w);
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            poll(&p, 1, -1);
        } else if (errno != EINTR) {
            out_broken[fd] = 1; /* EPIPE and the like: discard from now on */
        }
    }
}

/* Print data[0..n) as (part of) a line: prefix unless continuing, and a
 * newline appended when add_nl is set. */
static void emit(psr_stream *s, const char *prefix, const char *data, size_t n,
                 int add_nl)
{
    struct iovec iov[3];
    int k = 0;
    if (!s->cont && prefix != NULL)
        iov[k++] = (struct iovec){(void *)prefix, strlen(prefix)};
    if (n > 0) iov[k++] = (struct iovec){(void *)data, n};
    if (add_nl) iov[k++] = (struct iovec){(void *)"\n", 1};
    write_all(s->out, iov, k);
    s->cont = !(add_nl || (n > 0 && data[n - 1] == '\n'));
}

/* Print the buffered partial line and forget it (continuation follows). */
static void flush_partial(psr_stream *s, const char *prefix, int add_nl)
{
    if (s->len > 0 || (add_nl && s->cont)) emit(s, prefix, s->buf, s->len, add_nl);
    s->len = 0;
    if (s->cap > PSR_KEEP_CAP) {
        free(s->buf);
        s->buf = NULL;
        s->cap = 0;
    }
}

/* Append p[0..n) to the line buffer; if memory runs out, print the buffered
 * part and p as pieces instead. */
static void append(psr_stream *s, const char *prefix, const char *p, size_t n)
{
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->len + n) cap *= 2;
        char *b = realloc(s->buf, cap);
        if (b == NULL) {
            flush_partial(s, prefix, 0);
            emit(s, prefix, p, n, 0);
            return;
        }
        s->buf = b;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
}

/* Print every complete line in p[0..n) and keep the unfinished tail. */
static void feed(psr_stream *s, const char *prefix, const char *p, size_t n)
{
    const char *nl;
    while ((nl = memchr(p, '\n', n)) != NULL) {
        size_t k = (size_t)(nl - p) + 1;
        if (s->len > 0) {
            append(s, prefix, p, k);
            flush_partial(s, prefix, 0);
        } else {
            emit(s, prefix, p, k, 0);
        }
        p += k;
        n -= k;
    }
    if (n > 0) append(s, prefix, p, n);
    if (s->len >= PSR_LINE_MAX) flush_partial(s, prefix, 0);
}

int psr_stream_read(psr_stream *s, const char *prefix)
{
    if (s->fd < 0) return 1;
    ssize_t n = read(s->fd, scratch, sizeof(scratch));
    if (n > 0) {
        feed(s, prefix, scratch, (size_t)n);
        return 0;
    }
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    psr_stream_close(s, prefix); /* end of file, or an error we cannot fix */
    return 1;
}

void psr_stream_close(psr_stream *s, const char *prefix)
{
    flush_partial(s, prefix, 1);
    free(s->buf);
    s->buf = NULL;
    s->cap = 0;
    if (s->fd >= 0) close(s->fd);
    s->fd = -1;
}
