/* identity.c - SPIFFE identities: parse, format, compare, read from certificates. */
#include <wolfssl/options.h> /* first: the build's feature macros */
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn.h>

#include <string.h>

#include "hbone/identity.h"

static const char *const id_errors[ZT_ID_EMAX_] = {
	[ZT_ID_OK] = "ok",
	[ZT_ID_ESCHEME] = "identity does not start with \"spiffe://\"",
	[ZT_ID_ETD] = "trust domain must be 1-255 characters of [a-z0-9._-]",
	[ZT_ID_EPATH] = "identity path is not /ns/<namespace>/sa/<service account>",
	[ZT_ID_ENS] = "namespace is not a DNS-1123 label (1-63 of [a-z0-9-], "
		      "alphanumeric at both ends)",
	[ZT_ID_ESA] = "service account is not a DNS-1123 subdomain (1-253 of "
		      "[a-z0-9.-], labels alphanumeric at both ends)",
	[ZT_ID_ENOCERT] = "no certificate",
	[ZT_ID_ECERT] = "certificate cannot be parsed",
	[ZT_ID_ENOSAN] = "certificate has no subjectAltName",
	[ZT_ID_ENOURI] = "certificate subjectAltName has no URI",
	[ZT_ID_EMANYURI] = "certificate has more than one URI SAN",
	[ZT_ID_ENOMEM] = "out of memory",
};

const char *zt_identity_strerror(int err)
{
	if (err < 0)
		err = -err;
	if (err >= ZT_ID_EMAX_)
		return "unknown identity error";
	return id_errors[err];
}

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* SPIFFE ID spec, section 2.1: lowercase letters, digits, '.', '-', '_'. */
static bool valid_td(const char *s, size_t n)
{
	if (n == 0 || n > ZT_ID_TD_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_lower_alnum(s[i]) && s[i] != '.' && s[i] != '-' && s[i] != '_')
			return false;
	return true;
}

/* RFC 1123 label as Kubernetes checks it: [a-z0-9]([-a-z0-9]*[a-z0-9])?, <= max. */
static bool valid_label(const char *s, size_t n, size_t max)
{
	if (n == 0 || n > max)
		return false;
	if (!is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
		return false;
	for (size_t i = 1; i + 1 < n; i++)
		if (!is_lower_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

/* DNS-1123 subdomain: dot-separated labels, <= 253 in all. */
static bool valid_subdomain(const char *s, size_t n)
{
	if (n == 0 || n > ZT_ID_SA_MAX)
		return false;
	size_t start = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i == n || s[i] == '.') {
			if (!valid_label(s + start, i - start, 63))
				return false;
			start = i + 1;
		}
	}
	return true;
}

/* Assemble the canonical URI from validated parts. */
static void compose(struct zt_identity *id, const char *td, size_t td_len,
		    const char *ns, size_t ns_len, const char *sa, size_t sa_len)
{
	char *p = id->uri;
	memcpy(p, ZT_ID_SCHEME, ZT_ID_SCHEME_LEN);
	p += ZT_ID_SCHEME_LEN;
	memcpy(p, td, td_len);
	p += td_len;
	memcpy(p, "/ns/", 4);
	p += 4;
	id->ns_off = (uint16_t)(p - id->uri);
	memcpy(p, ns, ns_len);
	p += ns_len;
	memcpy(p, "/sa/", 4);
	p += 4;
	id->sa_off = (uint16_t)(p - id->uri);
	memcpy(p, sa, sa_len);
	p += sa_len;
	*p = '\0';
	id->len = (uint16_t)(p - id->uri);
	id->td_len = (uint16_t)td_len;
	id->ns_len = (uint16_t)ns_len;
	id->sa_len = (uint16_t)sa_len;
}

static int check_parts(const char *td, size_t td_len, const char *ns, size_t ns_len,
		       const char *sa, size_t sa_len)
{
	if (!valid_td(td, td_len))
		return -ZT_ID_ETD;
	if (!valid_label(ns, ns_len, ZT_ID_NS_MAX))
		return -ZT_ID_ENS;
	if (!valid_subdomain(sa, sa_len))
		return -ZT_ID_ESA;
	return 0;
}

int zt_identity_parse(struct zt_identity *id, const char *s, size_t len)
{
	memset(id, 0, sizeof *id);
	if (len < ZT_ID_SCHEME_LEN || memcmp(s, ZT_ID_SCHEME, ZT_ID_SCHEME_LEN) != 0)
		return -ZT_ID_ESCHEME;
	const char *td = s + ZT_ID_SCHEME_LEN, *end = s + len;
	const char *slash = memchr(td, '/', (size_t)(end - td));
	if (!slash)
		return td == end ? -ZT_ID_ETD : -ZT_ID_EPATH;
	size_t td_len = (size_t)(slash - td);
	if (!valid_td(td, td_len))
		return -ZT_ID_ETD;

	/* "/ns/" <ns> "/sa/" <sa>, with no further '/' in <sa> */
	const char *p = slash;
	if ((size_t)(end - p) < 4 || memcmp(p, "/ns/", 4) != 0)
		return -ZT_ID_EPATH;
	const char *ns = p + 4;
	const char *ns_end = memchr(ns, '/', (size_t)(end - ns));
	if (!ns_end || (size_t)(end - ns_end) < 4 || memcmp(ns_end, "/sa/", 4) != 0)
		return -ZT_ID_EPATH;
	const char *sa = ns_end + 4;
	if (memchr(sa, '/', (size_t)(end - sa)))
		return -ZT_ID_EPATH;

	int ret = check_parts(td, td_len, ns, (size_t)(ns_end - ns), sa, (size_t)(end - sa));
	if (ret < 0)
		return ret;
	compose(id, td, td_len, ns, (size_t)(ns_end - ns), sa, (size_t)(end - sa));
	return 0;
}

int zt_identity_set(struct zt_identity *id, const char *trust_domain, const char *ns,
		    const char *sa)
{
	memset(id, 0, sizeof *id);
	size_t td_len = strlen(trust_domain), ns_len = strlen(ns), sa_len = strlen(sa);
	int ret = check_parts(trust_domain, td_len, ns, ns_len, sa, sa_len);
	if (ret < 0)
		return ret;
	compose(id, trust_domain, td_len, ns, ns_len, sa, sa_len);
	return 0;
}

bool zt_identity_eq(const struct zt_identity *a, const struct zt_identity *b)
{
	return a->len == b->len && memcmp(a->uri, b->uri, a->len) == 0;
}

int zt_identity_cmp(const struct zt_identity *a, const struct zt_identity *b)
{
	return strcmp(a->uri, b->uri);
}

bool zt_identity_in_td(const struct zt_identity *id, const char *td, size_t td_len)
{
	return id->len && id->td_len == td_len &&
	       memcmp(id->uri + ZT_ID_SCHEME_LEN, td, td_len) == 0;
}

bool zt_identity_same_td(const struct zt_identity *a, const struct zt_identity *b)
{
	return zt_identity_in_td(a, b->uri + ZT_ID_SCHEME_LEN, b->td_len);
}

int zt_identity_from_x509(struct zt_identity *id, struct WOLFSSL_X509 *x509)
{
	memset(id, 0, sizeof *id);
	if (!x509)
		return -ZT_ID_ENOCERT;

	/* wolfSSL returns the SAN's GeneralNames as a stack it allocates. */
	WOLFSSL_STACK *names = wolfSSL_X509_get_ext_d2i(x509, NID_subject_alt_name, NULL, NULL);
	if (!names) {
		/* Either no extension, or one whose names this build does not
		 * decode (IP, otherName); neither has a URI. */
		return wolfSSL_X509_get_ext_by_NID(x509, NID_subject_alt_name, -1) >= 0
			       ? -ZT_ID_ENOURI
			       : -ZT_ID_ENOSAN;
	}

	const WOLFSSL_ASN1_STRING *uri = NULL;
	int n_uri = 0;
	for (int i = 0, n = wolfSSL_sk_GENERAL_NAME_num(names); i < n; i++) {
		WOLFSSL_GENERAL_NAME *gn = wolfSSL_sk_GENERAL_NAME_value(names, i);
		if (gn && gn->type == ASN_URI_TYPE) {
			n_uri++;
			uri = gn->d.uniformResourceIdentifier;
		}
	}
	int ret;
	if (n_uri == 0)
		ret = -ZT_ID_ENOURI;
	else if (n_uri > 1)
		ret = -ZT_ID_EMANYURI;
	else if (!uri || !uri->data || uri->length < 0)
		ret = -ZT_ID_ECERT;
	else
		ret = zt_identity_parse(id, uri->data, (size_t)uri->length);
	wolfSSL_sk_GENERAL_NAME_pop_free(names, wolfSSL_GENERAL_NAME_free);
	return ret;
}

int zt_identity_from_der(struct zt_identity *id, const uint8_t *der, size_t len)
{
	memset(id, 0, sizeof *id);
	if (!der || len == 0)
		return -ZT_ID_ENOCERT;
	if (len > INT32_MAX)
		return -ZT_ID_ECERT;
	WOLFSSL_X509 *x509 = wolfSSL_X509_d2i(NULL, der, (int)len);
	if (!x509)
		return -ZT_ID_ECERT;
	int ret = zt_identity_from_x509(id, x509);
	wolfSSL_X509_free(x509);
	return ret;
}

int zt_identity_from_peer(struct zt_identity *id, struct WOLFSSL *ssl)
{
	memset(id, 0, sizeof *id);
	if (!ssl)
		return -ZT_ID_ENOCERT;
	/* A copy of the peer's leaf; ours to free. */
	WOLFSSL_X509 *x509 = wolfSSL_get_peer_certificate(ssl);
	if (!x509)
		return -ZT_ID_ENOCERT;
	int ret = zt_identity_from_x509(id, x509);
	wolfSSL_X509_free(x509);
	return ret;
}
