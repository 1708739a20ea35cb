/* spill.h - private bytes for a connection whose reader is slow.
 *
 * Received bytes normally wait in the shard's provided buffers until they are
 * sent on (no copy). Those buffers are shared by every connection of the
 * shard, so a few dozen receivers that stop reading would pin them all and
 * starve everyone else. When the shard runs short of buffers, connections that
 * are holding some move their unsent bytes here (one copy), return the buffers,
 * and keep appending here until the reader has caught up; then the spill is
 * freed and they go back to the provided buffers.
 *
 * A ring of fixed capacity (the connection's cap plus one buffer, the most a
 * direction can hold): bytes a send in flight points at never move, new bytes
 * go into the free part. Shard thread only.
 */
#ifndef ZT_ENGINE_SPILL_H
#define ZT_ENGINE_SPILL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

struct zt_spill {
	struct msghdr msg;   /* the send in flight from here */
	struct iovec iov[2];
	uint32_t cap, head, count;
	uint8_t data[];
};

static inline struct zt_spill *zt_spill_new(uint32_t cap)
{
	struct zt_spill *sp = malloc(sizeof(*sp) + cap);
	if (sp) {
		memset(sp, 0, sizeof(*sp));
		sp->cap = cap;
	}
	return sp;
}

/* Append n bytes; the caller keeps count + n <= cap. Returns bytes taken. */
static inline uint32_t zt_spill_put(struct zt_spill *sp, const uint8_t *p, uint32_t n)
{
	uint32_t room = sp->cap - sp->count;
	if (n > room)
		n = room;
	uint32_t tail = (sp->head + sp->count) % sp->cap;
	uint32_t k = sp->cap - tail < n ? sp->cap - tail : n;
	memcpy(sp->data + tail, p, k);
	memcpy(sp->data, p + k, n - k);
	sp->count += n;
	return n;
}

/* Point msg at the pending bytes (one or two pieces); returns the count. */
static inline uint32_t zt_spill_msg(struct zt_spill *sp)
{
	uint32_t first = sp->cap - sp->head < sp->count ? sp->cap - sp->head : sp->count;
	sp->iov[0] = (struct iovec){sp->data + sp->head, first};
	sp->iov[1] = (struct iovec){sp->data, sp->count - first};
	memset(&sp->msg, 0, sizeof(sp->msg));
	sp->msg.msg_iov = sp->iov;
	sp->msg.msg_iovlen = sp->count > first ? 2 : 1;
	return sp->count;
}

/* The first contiguous pending piece. */
static inline uint32_t zt_spill_peek(const struct zt_spill *sp, const uint8_t **p)
{
	*p = sp->data + sp->head;
	return sp->cap - sp->head < sp->count ? sp->cap - sp->head : sp->count;
}

static inline void zt_spill_consume(struct zt_spill *sp, uint32_t n)
{
	sp->head = (sp->head + n) % sp->cap;
	sp->count -= n;
	if (!sp->count)
		sp->head = 0;
}

#endif
