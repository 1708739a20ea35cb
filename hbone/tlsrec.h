/* tlsrec.h - TLS 1.3 application-traffic records (RFC 8446 section 5), sans I/O.
 *
 * wolfSSL does the handshake; once it is done, h2conn seals and opens the
 * records of the connection here, straight between zring's buffers: sealing
 * encrypts the caller's segments (frame headers, payload still in the ring's
 * receive buffers) into the output queue, opening decrypts ciphertext as it
 * arrives into a record-sized plaintext buffer the caller provides (and may
 * swap between records). AES-GCM only (ztunnel's two
 * suites); wolfCrypt's streaming AES-GCM does the work.
 *
 * Needs wolfSSL with HAVE_SECRET_CALLBACK (the traffic secrets) and
 * WOLFSSL_AESGCM_STREAM; ZT_TLSREC is 0 without them and h2conn then leaves
 * the records to wolfSSL.
 */
#ifndef ZT_HBONE_TLSREC_H
#define ZT_HBONE_TLSREC_H

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/aes.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#if defined(HAVE_SECRET_CALLBACK) && defined(WOLFSSL_AESGCM_STREAM) && defined(HAVE_HKDF) && \
	defined(WOLFSSL_TLS13) && defined(HAVE_AESGCM)
#define ZT_TLSREC 1
#else
#define ZT_TLSREC 0
#endif

#define ZT_TLSREC_HDR 5u            /* type, legacy version, length */
#define ZT_TLSREC_TAG 16u           /* AES-GCM tag */
#define ZT_TLSREC_PLAIN_MAX 16384u  /* 2^14: most plaintext per record */
#define ZT_TLSREC_BODY_MAX (16384u + 256u) /* 2^14 + 256: most ciphertext per record */
/* Bytes a record of n plaintext bytes takes on the wire. */
#define ZT_TLSREC_WIRE(n) (ZT_TLSREC_HDR + (n) + 1u + ZT_TLSREC_TAG)

/* Inner content types. */
#define ZT_TLSREC_ALERT 21u
#define ZT_TLSREC_HANDSHAKE 22u
#define ZT_TLSREC_APPDATA 23u

#define ZT_TLSREC_SECRET_MAX 48u /* SHA-384 */

/* One direction's traffic key. */
struct zt_tlsrec_key {
#if ZT_TLSREC
	Aes aes;
#endif
	uint8_t iv[12];
	uint8_t secret[ZT_TLSREC_SECRET_MAX];
	uint8_t secret_len; /* 32 (SHA-256 suite) or 48 (SHA-384 suite) */
	uint8_t key_len;    /* 16 or 32 */
	bool set;
	uint64_t seq;
	uint64_t generation; /* KeyUpdates so far */
};

/* Derive key and IV from a traffic secret (secret_len 32: AES-128-GCM with
 * SHA-256; 48: AES-256-GCM with SHA-384). 0 or -EINVAL/-EIO. */
int zt_tlsrec_key_init(struct zt_tlsrec_key *k, const uint8_t *secret, size_t secret_len);
/* The next generation (KeyUpdate): secret = HKDF-Expand-Label(secret,
 * "traffic upd", "", Hash.length); sequence back to 0. */
int zt_tlsrec_key_update(struct zt_tlsrec_key *k);
/* Forget the key (zeroed). */
void zt_tlsrec_key_wipe(struct zt_tlsrec_key *k);

/* Seal one record of inner type `type` whose plaintext is the concatenation
 * of the segments (at most ZT_TLSREC_PLAIN_MAX bytes in all) into `out`,
 * which has room for ZT_TLSREC_WIRE(total). Returns the record's length or
 * -EMSGSIZE / -EIO. The sequence number advances. */
ssize_t zt_tlsrec_seal(struct zt_tlsrec_key *k, uint8_t type, const struct iovec *seg, int nseg,
		       uint8_t *out);

/* Receiving side: records are decrypted as their bytes arrive, across as
 * many calls as the transport splits them into. */
struct zt_tlsrec_rx {
	struct zt_tlsrec_key key;
	uint8_t hdr[ZT_TLSREC_HDR];
	uint8_t tag[ZT_TLSREC_TAG];
	uint8_t hdr_len;  /* header bytes so far */
	uint8_t tag_len;  /* tag bytes so far */
	uint32_t body;    /* ciphertext bytes of this record (without the tag) */
	uint32_t got;     /* ciphertext bytes decrypted so far */
	/* ZT_TLSREC_BODY_MAX bytes, the caller's; it may point elsewhere
	 * between records (never while zt_tlsrec_rx_midway()). */
	uint8_t *plain;
};

/* Why a record was refused (the TLS alert it calls for). */
enum zt_tlsrec_err {
	ZT_TLSREC_E_DECODE = 50,        /* decode_error: bad header */
	ZT_TLSREC_E_UNEXPECTED = 10,    /* unexpected_message: not application_data, no type */
	ZT_TLSREC_E_BAD_MAC = 20,       /* bad_record_mac: authentication failed */
	ZT_TLSREC_E_OVERFLOW = 22,      /* record_overflow */
	ZT_TLSREC_E_INTERNAL = 80,      /* internal_error */
};

/* Consume up to n bytes of ciphertext, stopping where a record ends. Returns
 * the bytes consumed, or -alert (enum zt_tlsrec_err). When a record ended
 * there *rec is true, its plaintext is rx->plain[0..*len) and its inner type
 * *type; call again for the rest. */
ssize_t zt_tlsrec_open(struct zt_tlsrec_rx *rx, const uint8_t *p, size_t n, bool *rec,
		       uint8_t *type, size_t *len);

/* Is a record partly received? (A transport EOF now cuts it.) */
static inline bool zt_tlsrec_rx_midway(const struct zt_tlsrec_rx *rx)
{
	return rx->hdr_len != 0;
}

#endif
