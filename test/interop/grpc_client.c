/* grpc_client.c - drive engine/grpc against a real gRPC server (python3-grpcio,
 * test_grpc.py), over real sockets on 127.0.0.1. Prints result lines that the
 * script checks; exit 0 when the run could be carried out (whatever status
 * the call ended with), 1 when the driver itself saw something wrong (bad
 * echo, out of order, no callback within the timeout), 2 on bad usage.
 *
 *   grpc_client unary --addr A [--size N] [--path P] [common]
 *       zt_grpc_unary with an N-byte patterned request:
 *       STATUS <code> <NAME> len=<n> echo=<ok|bad|-> msg=<grpc-message>
 *       [BODY <response as text>] with --print.
 *   grpc_client bidi --addr A --count N [--path P] [common]
 *       One stream; N messages of varied sizes (some > 64 KiB); half of them
 *       sent at once, the rest one per echo received (sent from on_message);
 *       every echo checked in order; half-close after the last:
 *       HEADERS <n>, RECEIVED <got>/<N> inorder=<yes|no>, STATUS ...
 *   grpc_client hold --addr A [--path P] [common]
 *       One stream, one message; after its echo prints "GOT 1" and waits for
 *       the stream and channel to fail (the script kills the server):
 *       CHANNEL fatal=<0|1> err=<e> msg=..., STATUS ...
 *   common: --root PEM --name SERVER_NAME --md key=value (repeatable)
 *           --timeout MS (default 20000) --max BYTES --plaintext
 *           --keepalive MS --ping-timeout MS --connect-timeout MS
 *           --free-in-cb (free the channel from inside on_close)
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "engine/grpc.h"

#define MAX_MD 8

static struct zt_grpc_opts opts;
static struct zt_grpc_md md[MAX_MD];
static size_t n_md;
static uint32_t timeout_ms = 20000;
static const char *path;
static size_t size;
static unsigned count = 100;
static bool print_body;
static bool free_in_cb; /* free the channel from on_close */

static void usage(void)
{
	fprintf(stderr, "usage: grpc_client unary|bidi|hold --addr A [options]\n");
	exit(2);
}

static uint8_t pattern(size_t msg, size_t j)
{
	return (uint8_t)(msg * 7 + j * 31 + (j >> 8));
}

static size_t bidi_size(unsigned i)
{
	return (i * 7919u) % 3000u + (i % 10 == 3 ? 70000u : 0);
}

static void print_status(int status, const char *msg)
{
	printf("STATUS %d %s msg=%s\n", status, zt_grpc_code_name(status), msg);
	fflush(stdout);
}

static int do_unary(void)
{
	uint8_t *req = malloc(size ? size : 1);
	if (!req)
		return 1;
	for (size_t j = 0; j < size; j++)
		req[j] = pattern(1, j);
	struct zt_grpc_reply rep;
	int st = zt_grpc_unary(&opts, path ? path : "/zt.test.Test/Echo", md, n_md, req, size,
			       timeout_ms, &rep);
	const char *echo = "-";
	if (st == ZT_GRPC_OK && !print_body)
		echo = rep.len == size && (!size || !memcmp(rep.data, req, size)) ? "ok" : "bad";
	printf("STATUS %d %s len=%zu echo=%s msg=%s\n", st, zt_grpc_code_name(st), rep.len, echo,
	       rep.message);
	if (print_body && st == ZT_GRPC_OK)
		printf("BODY %.*s\n", (int)rep.len, rep.data);
	fflush(stdout);
	zt_grpc_reply_free(&rep);
	free(req);
	return strcmp(echo, "bad") ? 0 : 1;
}

/* ---- async modes --------------------------------------------------------- */

struct run {
	struct zt_grpc *ch;
	struct zt_grpc_stream *st;
	unsigned sent, got;
	bool inorder, closed, chan_failed, hold;
	int status;
};

static int send_msg(struct run *r, unsigned i)
{
	size_t n = bidi_size(i);
	uint8_t *b = malloc(n ? n : 1);
	if (!b)
		return -ENOMEM;
	for (size_t j = 0; j < n; j++)
		b[j] = pattern(i, j);
	int e = zt_grpc_send(r->st, b, n, false);
	free(b);
	if (e)
		fprintf(stderr, "send %u: %s\n", i, strerror(-e));
	r->sent++;
	if (!r->hold && r->sent == count)
		zt_grpc_close_send(r->st);
	return e;
}

static void on_headers(void *sud, const struct zt_grpc_md *m, size_t n)
{
	(void)m;
	printf("HEADERS %zu\n", n);
	fflush(stdout);
}

static void on_message(void *sud, const uint8_t *msg, size_t len)
{
	struct run *r = sud;
	unsigned i = r->got++;
	bool ok = len == bidi_size(i);
	for (size_t j = 0; ok && j < len; j++)
		ok = msg[j] == pattern(i, j);
	if (!ok && r->inorder) {
		fprintf(stderr, "message %u: wrong content or order (len %zu)\n", i, len);
		r->inorder = false;
	}
	if (r->hold) {
		printf("GOT %u\n", r->got);
		fflush(stdout);
		return;
	}
	if (r->sent < count)
		send_msg(r, r->sent);
}

static void on_close(void *sud, int status, const char *message)
{
	struct run *r = sud;
	r->closed = true;
	r->status = status;
	r->st = NULL;
	printf("RECEIVED %u/%u inorder=%s\n", r->got, count, r->inorder ? "yes" : "no");
	print_status(status, message);
	if (free_in_cb && r->ch) {
		zt_grpc_free(r->ch); /* deferred: we are inside zt_grpc_io */
		r->ch = NULL;
		printf("FREED in on_close\n");
	}
}

static void on_ready(void *ud)
{
	printf("READY\n");
	fflush(stdout);
}

static void on_error(void *ud, int err, bool fatal, const char *msg)
{
	struct run *r = ud;
	if (fatal)
		r->chan_failed = true;
	printf("CHANNEL fatal=%d err=%d msg=%s\n", fatal, err, msg);
	fflush(stdout);
}

static const struct zt_grpc_cbs chan_cbs = {.on_ready = on_ready, .on_error = on_error};
static const struct zt_grpc_stream_cbs stream_cbs = {
	.on_headers = on_headers, .on_message = on_message, .on_close = on_close};

static int do_async(bool hold)
{
	struct run r = {.inorder = true, .hold = hold};
	char err[256];
	uint64_t deadline = zt_now_ms() + timeout_ms;
	int e = zt_grpc_new(&opts, &chan_cbs, &r, zt_now_ms(), &r.ch, err, sizeof(err));
	if (e) {
		printf("NEW %d %s\n", e, err);
		return 0;
	}
	e = zt_grpc_stream_open(r.ch, path ? path : "/zt.test.Test/Bidi", md, n_md, &stream_cbs,
				&r, &r.st);
	if (e) {
		printf("OPEN %d\n", e);
		zt_grpc_free(r.ch);
		return 1;
	}
	unsigned first = hold ? 1 : (count + 1) / 2;
	for (unsigned i = 0; i < first && i < count; i++)
		send_msg(&r, i);
	if (!hold && !count)
		zt_grpc_close_send(r.st);
	/* until the stream closed (and, holding, the channel failed too) */
	while (!r.closed || (hold && !r.chan_failed)) {
		uint64_t now = zt_now_ms();
		if (now >= deadline) {
			printf("TIMEOUT closed=%d channel_failed=%d\n", r.closed, r.chan_failed);
			zt_grpc_free(r.ch);
			return 1;
		}
		int t = zt_grpc_timeout(r.ch, now);
		if (t < 0 || (uint64_t)t > deadline - now)
			t = (int)(deadline - now);
		struct pollfd p = {.fd = zt_grpc_fd(r.ch), .events = zt_grpc_events(r.ch)};
		int n = poll(&p, 1, t);
		if (n < 0 && errno != EINTR)
			break;
		zt_grpc_io(r.ch, n > 0 ? p.revents : 0, zt_now_ms());
		if (!r.ch)
			return r.inorder ? 0 : 1;
	}
	printf("STATE %d\n", zt_grpc_state(r.ch));
	zt_grpc_free(r.ch);
	return r.inorder ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	const char *mode = argv[1];
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--plaintext")) {
			opts.plaintext = true;
			continue;
		}
		if (!strcmp(a, "--free-in-cb")) {
			free_in_cb = true;
			continue;
		}
		if (!strcmp(a, "--print")) {
			print_body = true;
			continue;
		}
		if (!v)
			usage();
		i++;
		if (!strcmp(a, "--addr"))
			opts.address = v;
		else if (!strcmp(a, "--root"))
			opts.root_cert_path = v;
		else if (!strcmp(a, "--name"))
			opts.server_name = v;
		else if (!strcmp(a, "--path"))
			path = v;
		else if (!strcmp(a, "--size"))
			size = strtoull(v, NULL, 0);
		else if (!strcmp(a, "--count"))
			count = (unsigned)strtoul(v, NULL, 0);
		else if (!strcmp(a, "--timeout"))
			timeout_ms = (uint32_t)strtoul(v, NULL, 0);
		else if (!strcmp(a, "--max"))
			opts.max_message = strtoull(v, NULL, 0);
		else if (!strcmp(a, "--keepalive"))
			opts.keepalive_ms = (uint32_t)strtoul(v, NULL, 0);
		else if (!strcmp(a, "--ping-timeout"))
			opts.ping_timeout_ms = (uint32_t)strtoul(v, NULL, 0);
		else if (!strcmp(a, "--connect-timeout"))
			opts.connect_timeout_ms = (uint32_t)strtoul(v, NULL, 0);
		else if (!strcmp(a, "--md") && n_md < MAX_MD && strchr(v, '=')) {
			char *k = strdup(v);
			char *eq = strchr(k, '=');
			*eq = '\0';
			md[n_md++] = (struct zt_grpc_md){k, eq + 1};
		} else
			usage();
	}
	if (!opts.address)
		usage();
	zt_log_configure(getenv("ZT_LOG") ? getenv("ZT_LOG") : "warn", false);
	if (wolfSSL_Init() != WOLFSSL_SUCCESS)
		return 1;
	int rc;
	if (!strcmp(mode, "unary"))
		rc = do_unary();
	else if (!strcmp(mode, "bidi"))
		rc = do_async(false);
	else if (!strcmp(mode, "hold"))
		rc = do_async(true);
	else
		usage();
	for (size_t i = 0; i < n_md; i++)
		free((char *)md[i].key);
	wolfSSL_Cleanup();
	return rc;
}
