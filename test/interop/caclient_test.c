/* caclient_test.c - drive engine/caclient against a real gRPC CA
 * (test/integ/fake_istiod.py: python3-grpcio, certificates signed by the
 * `cryptography` library), over real sockets on 127.0.0.1; run by
 * test_caclient.py, which checks what this prints and writes.
 *
 *   caclient_test --addr A --root PEM --id URI [--name N] [--token-file F]
 *                 [--cluster C] [--ttl S] [--timeout MS] [--out DIR]
 *
 * Prints "RESULT <ret> <message>" (ret: 0, a gRPC status, or a negative
 * errno). On success also "VALIDITY <not_before> <not_after>" and, with
 * --out, writes DIR/{cert,chain,key,roots}.pem; the answer is also put in a
 * certificate store (zt_certstore_build with the returned roots), as the
 * control thread will, and "STORE ok" or "STORE <error>" printed.
 * Exit 0 when the call could be carried out (whatever it returned), 1 when
 * the driver saw something wrong (a half-filled result, a store refusing a
 * certificate the client accepted), 2 on bad usage.
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/caclient.h"
#include "hbone/ca.h"
#include "hbone/certstore.h"
#include "hbone/identity.h"

static int write_file(const char *dir, const char *name, const char *s)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	int r = fputs(s, f) < 0 ? -1 : 0;
	if (fclose(f))
		r = -1;
	return r;
}

static int usage(void)
{
	fprintf(stderr, "usage: caclient_test --addr A --root PEM --id URI [--name N] "
			"[--token-file F] [--cluster C] [--ttl S] [--timeout MS] [--out DIR]\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct zt_caclient_opts o = {0};
	const char *uri = NULL, *out_dir = NULL;
	uint32_t ttl = 0, timeout = 10000;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			return usage();
		i++;
		if (!strcmp(a, "--addr"))
			o.address = v;
		else if (!strcmp(a, "--root"))
			o.root_cert_path = v;
		else if (!strcmp(a, "--name"))
			o.server_name = v;
		else if (!strcmp(a, "--token-file"))
			o.token_path = v;
		else if (!strcmp(a, "--cluster"))
			o.cluster_id = v;
		else if (!strcmp(a, "--id"))
			uri = v;
		else if (!strcmp(a, "--ttl"))
			ttl = (uint32_t)strtoul(v, NULL, 10);
		else if (!strcmp(a, "--timeout"))
			timeout = (uint32_t)strtoul(v, NULL, 10);
		else if (!strcmp(a, "--out"))
			out_dir = v;
		else
			return usage();
	}
	if (!uri)
		return usage();
	struct zt_identity id;
	int r = zt_identity_parse(&id, uri, strlen(uri));
	if (r < 0) {
		fprintf(stderr, "bad identity %s: %s\n", uri, zt_identity_strerror(r));
		return 2;
	}
	if (wolfSSL_Init() != WOLFSSL_SUCCESS)
		return 1;
	struct zt_issued is;
	char *roots = NULL, err[1024];
	int ret = zt_caclient_issue(&o, &id, ttl, timeout, &is, &roots, err, sizeof err);
	printf("RESULT %d %s\n", ret, ret ? err : "ok");
	int rc = 0;
	if (ret != 0) {
		/* a failure leaves nothing behind */
		if (is.cert_pem || is.chain_pem || is.key_pem || roots || !err[0]) {
			printf("BAD failure left results or no message\n");
			rc = 1;
		}
		goto out;
	}
	if (!is.cert_pem || !is.chain_pem || !is.key_pem || !roots) {
		printf("BAD success without every result\n");
		rc = 1;
		goto out;
	}
	printf("VALIDITY %lld %lld\n", (long long)is.not_before, (long long)is.not_after);
	if (out_dir && (write_file(out_dir, "cert.pem", is.cert_pem) ||
			write_file(out_dir, "chain.pem", is.chain_pem) ||
			write_file(out_dir, "key.pem", is.key_pem) ||
			write_file(out_dir, "roots.pem", roots))) {
		printf("BAD cannot write to %s: %s\n", out_dir, strerror(errno));
		rc = 1;
		goto out;
	}
	struct zt_cert_input in = {&id, is.chain_pem, strlen(is.chain_pem), is.key_pem,
				   strlen(is.key_pem)};
	struct zt_certstore *store = NULL;
	char serr[512];
	r = zt_certstore_build(&in, 1, roots, strlen(roots), &store, serr, sizeof serr);
	if (r) {
		printf("STORE %s\n", serr);
		rc = 1;
	} else {
		const struct zt_cert_entry *e = zt_certstore_find(store, &id);
		printf("STORE %s\n", e && e->not_after == is.not_after ? "ok" : "entry missing");
		if (!e)
			rc = 1;
		zt_certstore_free(store);
	}
out:
	fflush(stdout);
	zt_issued_free(&is);
	free(roots);
	wolfSSL_Cleanup();
	return rc;
}
