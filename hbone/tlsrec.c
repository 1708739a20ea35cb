/* tlsrec.c - TLS 1.3 record protection (RFC 8446 5.2-5.3, 7.2-7.3), AES-GCM. */
#include "hbone/tlsrec.h"

#include <errno.h>
#include <string.h>

#if ZT_TLSREC
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/kdf.h>

static const uint8_t LABEL_PREFIX[] = "tls13 ";

static int expand_label(const struct zt_tlsrec_key *k, const char *label, uint8_t *out,
			size_t out_len)
{
	int digest = k->secret_len == 48 ? WC_SHA384 : WC_SHA256;
	int r = wc_Tls13_HKDF_Expand_Label(out, (word32)out_len, k->secret, k->secret_len,
					   LABEL_PREFIX, sizeof(LABEL_PREFIX) - 1,
					   (const byte *)label, (word32)strlen(label), NULL, 0,
					   digest);
	return r ? -EIO : 0;
}

/* Key and IV of the current secret (RFC 8446 7.3). */
static int derive(struct zt_tlsrec_key *k)
{
	uint8_t key[32];
	int r = expand_label(k, "key", key, k->key_len);
	if (!r)
		r = expand_label(k, "iv", k->iv, sizeof(k->iv));
	if (!r && wc_AesGcmSetKey(&k->aes, key, k->key_len))
		r = -EIO;
	explicit_bzero(key, sizeof(key));
	k->seq = 0;
	return r;
}

int zt_tlsrec_key_init(struct zt_tlsrec_key *k, const uint8_t *secret, size_t secret_len)
{
	if (k->set)
		zt_tlsrec_key_wipe(k);
	if (secret_len != 32 && secret_len != 48)
		return -EINVAL;
	memset(k, 0, sizeof(*k));
	if (wc_AesInit(&k->aes, NULL, INVALID_DEVID))
		return -EIO;
	k->set = true;
	memcpy(k->secret, secret, secret_len);
	k->secret_len = (uint8_t)secret_len;
	k->key_len = secret_len == 48 ? 32 : 16;
	int r = derive(k);
	if (r)
		zt_tlsrec_key_wipe(k);
	return r;
}

int zt_tlsrec_key_update(struct zt_tlsrec_key *k)
{
	if (!k->set)
		return -EINVAL;
	uint8_t next[ZT_TLSREC_SECRET_MAX];
	int r = expand_label(k, "traffic upd", next, k->secret_len);
	if (!r) {
		memcpy(k->secret, next, k->secret_len);
		r = derive(k);
		k->generation++;
	}
	explicit_bzero(next, sizeof(next));
	return r;
}

void zt_tlsrec_key_wipe(struct zt_tlsrec_key *k)
{
	if (k->set)
		wc_AesFree(&k->aes);
	explicit_bzero(k, sizeof(*k));
}

/* Per-record nonce: the IV XOR the 64-bit sequence number, right-aligned. */
static void nonce(const struct zt_tlsrec_key *k, uint8_t out[12])
{
	memcpy(out, k->iv, 12);
	for (int i = 0; i < 8; i++)
		out[11 - i] ^= (uint8_t)(k->seq >> (8 * i));
}

static void put_hdr(uint8_t *h, size_t body)
{
	h[0] = ZT_TLSREC_APPDATA; /* opaque_type */
	h[1] = 0x03;              /* legacy_record_version 0x0303 */
	h[2] = 0x03;
	h[3] = (uint8_t)(body >> 8);
	h[4] = (uint8_t)body;
}

ssize_t zt_tlsrec_seal(struct zt_tlsrec_key *k, uint8_t type, const struct iovec *seg, int nseg,
		       uint8_t *out)
{
	size_t n = 0;
	for (int i = 0; i < nseg; i++)
		n += seg[i].iov_len;
	if (n > ZT_TLSREC_PLAIN_MAX || !k->set)
		return -EMSGSIZE;
	if (k->seq == UINT64_MAX)
		return -EIO; /* never reached: KeyUpdate comes long before */
	size_t body = n + 1 + ZT_TLSREC_TAG;
	put_hdr(out, body);
	uint8_t iv[12];
	nonce(k, iv);
	uint8_t *c = out + ZT_TLSREC_HDR;
	if (wc_AesGcmInit(&k->aes, NULL, 0, iv, sizeof(iv)) ||
	    wc_AesGcmEncryptUpdate(&k->aes, NULL, NULL, 0, out, ZT_TLSREC_HDR))
		return -EIO;
	for (int i = 0; i < nseg; i++) {
		if (!seg[i].iov_len)
			continue;
		if (wc_AesGcmEncryptUpdate(&k->aes, c, seg[i].iov_base, (word32)seg[i].iov_len,
					   NULL, 0))
			return -EIO;
		c += seg[i].iov_len;
	}
	if (wc_AesGcmEncryptUpdate(&k->aes, c, &type, 1, NULL, 0) ||
	    wc_AesGcmEncryptFinal(&k->aes, c + 1, ZT_TLSREC_TAG))
		return -EIO;
	k->seq++;
	return (ssize_t)(ZT_TLSREC_HDR + body);
}

/* Append up to `want` bytes in all to dst (*have so far) from p; returns
 * the bytes taken. */
static size_t gather(uint8_t *dst, uint8_t *have, size_t want, const uint8_t *p, size_t n)
{
	size_t k = want - *have;
	if (k > n)
		k = n;
	memcpy(dst + *have, p, k);
	*have += (uint8_t)k;
	return k;
}

ssize_t zt_tlsrec_open(struct zt_tlsrec_rx *rx, const uint8_t *p, size_t n, bool *rec,
		       uint8_t *type, size_t *len)
{
	size_t used = 0;
	*rec = false;
	if (!rx->key.set)
		return -ZT_TLSREC_E_INTERNAL;
	while (used < n) {
		if (rx->hdr_len < ZT_TLSREC_HDR) {
			used += gather(rx->hdr, &rx->hdr_len, ZT_TLSREC_HDR, p + used, n - used);
			if (rx->hdr_len < ZT_TLSREC_HDR)
				break;
			/* After the handshake every record is application_data
			 * (a ChangeCipherSpec is no longer allowed, 5.). */
			if (rx->hdr[0] != ZT_TLSREC_APPDATA)
				return -ZT_TLSREC_E_UNEXPECTED;
			if (rx->hdr[1] != 0x03 || rx->hdr[2] != 0x03)
				return -ZT_TLSREC_E_DECODE;
			uint32_t body = (uint32_t)rx->hdr[3] << 8 | rx->hdr[4];
			if (body > ZT_TLSREC_BODY_MAX)
				return -ZT_TLSREC_E_OVERFLOW;
			if (body < 1 + ZT_TLSREC_TAG)
				return -ZT_TLSREC_E_DECODE;
			if (rx->key.seq == UINT64_MAX)
				return -ZT_TLSREC_E_INTERNAL;
			rx->body = body - ZT_TLSREC_TAG;
			rx->got = 0;
			rx->tag_len = 0;
			uint8_t iv[12];
			nonce(&rx->key, iv);
			if (wc_AesGcmInit(&rx->key.aes, NULL, 0, iv, sizeof(iv)) ||
			    wc_AesGcmDecryptUpdate(&rx->key.aes, NULL, NULL, 0, rx->hdr,
						   ZT_TLSREC_HDR))
				return -ZT_TLSREC_E_INTERNAL;
			continue;
		}
		if (rx->got < rx->body) {
			size_t k = rx->body - rx->got;
			if (k > n - used)
				k = n - used;
			if (wc_AesGcmDecryptUpdate(&rx->key.aes, rx->plain + rx->got, p + used,
						   (word32)k, NULL, 0))
				return -ZT_TLSREC_E_INTERNAL;
			rx->got += (uint32_t)k;
			used += k;
			continue;
		}
		used += gather(rx->tag, &rx->tag_len, ZT_TLSREC_TAG, p + used, n - used);
		if (rx->tag_len < ZT_TLSREC_TAG)
			break;
		/* The whole record is in: authenticate before anything is used. */
		rx->hdr_len = 0;
		if (wc_AesGcmDecryptFinal(&rx->key.aes, rx->tag, ZT_TLSREC_TAG))
			return -ZT_TLSREC_E_BAD_MAC;
		rx->key.seq++;
		/* TLSInnerPlaintext: content, type, zero padding (5.4). */
		size_t i = rx->body;
		while (i > 0 && rx->plain[i - 1] == 0)
			i--;
		if (i == 0)
			return -ZT_TLSREC_E_UNEXPECTED;
		*type = rx->plain[i - 1];
		*len = i - 1;
		if (*len > ZT_TLSREC_PLAIN_MAX)
			return -ZT_TLSREC_E_OVERFLOW;
		*rec = true;
		break;
	}
	return (ssize_t)used;
}

#else /* !ZT_TLSREC */

int zt_tlsrec_key_init(struct zt_tlsrec_key *k, const uint8_t *secret, size_t secret_len)
{
	return -ENOTSUP;
}

int zt_tlsrec_key_update(struct zt_tlsrec_key *k)
{
	return -ENOTSUP;
}

void zt_tlsrec_key_wipe(struct zt_tlsrec_key *k)
{
	memset(k, 0, sizeof(*k));
}

ssize_t zt_tlsrec_seal(struct zt_tlsrec_key *k, uint8_t type, const struct iovec *seg, int nseg,
		       uint8_t *out)
{
	return -ENOTSUP;
}

ssize_t zt_tlsrec_open(struct zt_tlsrec_rx *rx, const uint8_t *p, size_t n, bool *rec,
		       uint8_t *type, size_t *len)
{
	*rec = false;
	return -ZT_TLSREC_E_INTERNAL;
}

#endif
