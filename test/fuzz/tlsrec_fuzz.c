/* tlsrec_fuzz.c - fuzz target for hbone/tlsrec.c's record opening.
 *
 * Input: one mode byte, then data. Mode bit 0 clear: the data is fed as
 * ciphertext as it is. Set: the data is cut into plaintext records (lengths
 * from the data itself), each sealed with the same traffic key the receiver
 * uses, so authentic records reach the decryption and padding paths; mode
 * bits 1-3 then pick a byte of the sealed stream to flip (0: none). Either
 * way the stream is fed in pieces whose sizes come from the mode byte, and
 * what the opener reports is checked against the limits it promises. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hbone/tlsrec.h"

#if ZT_TLSREC
static const uint8_t SECRET[48] = {
	0x5f, 0x1a, 0x02, 0x9c, 0x33, 0x47, 0x80, 0x11, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x23, 0x45, 0x67,
	0x89, 0xab, 0xcd, 0xef, 0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe, 0x0f, 0x1e, 0x2d, 0x3c,
	0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1, 0xf0, 0x11, 0x22, 0x33, 0x44,
};

static struct zt_tlsrec_rx rx;
static struct zt_tlsrec_key tx;

static void feed(const uint8_t *p, size_t n, unsigned piece)
{
	size_t off = 0;
	while (off < n) {
		size_t k = n - off < piece ? n - off : piece;
		bool rec;
		uint8_t type;
		size_t len;
		ssize_t r = zt_tlsrec_open(&rx, p + off, k, &rec, &type, &len);
		if (r < 0)
			return; /* refused: the connection would end here */
		if ((size_t)r > k || (r == 0 && !rec))
			abort(); /* no progress, or more than given */
		if (rec && (len > ZT_TLSREC_PLAIN_MAX || type == 0))
			abort();
		off += (size_t)r;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	data++;
	size--;
	static uint8_t plain[ZT_TLSREC_BODY_MAX];
	memset(&rx, 0, offsetof(struct zt_tlsrec_rx, plain));
	rx.plain = plain;
	if (zt_tlsrec_key_init(&rx.key, SECRET, mode & 0x80 ? 32 : 48))
		abort();
	unsigned piece = 1u + ((mode >> 4) & 7u) * 997u; /* 1 .. 6980 */
	if (!(mode & 1)) {
		feed(data, size, piece);
	} else if (!zt_tlsrec_key_init(&tx, SECRET, mode & 0x80 ? 32 : 48)) {
		/* Seal: each record takes a length byte (x 64) and that much data,
		 * plus the byte after it as inner type (0 included: no type). */
		size_t cap = size / 2 * 80 + 4096, out_len = 0;
		uint8_t *out = malloc(cap);
		for (size_t i = 0; out && i + 2 <= size;) {
			size_t n = (size_t)data[i] * 64u;
			uint8_t type = data[i + 1];
			i += 2;
			if (n > size - i)
				n = size - i;
			if (out_len + ZT_TLSREC_WIRE(n) > cap)
				break;
			struct iovec v = {(void *)(data + i), n};
			ssize_t r = zt_tlsrec_seal(&tx, type, &v, 1, out + out_len);
			if (r < 0)
				abort();
			out_len += (size_t)r;
			i += n;
		}
		unsigned flip = (mode >> 1) & 7u;
		if (out && flip && out_len)
			out[(flip * 2654435761u) % out_len] ^= 0x20;
		if (out)
			feed(out, out_len, piece);
		free(out);
		zt_tlsrec_key_wipe(&tx);
	}
	zt_tlsrec_key_wipe(&rx.key);
	return 0;
}
#else
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	(void)data;
	(void)size;
	return 0;
}
#endif
