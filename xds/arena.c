#include "xds/arena.h"

#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Chunks grow from 16 KiB to 1 MiB; a request larger than a quarter of the
 * current chunk size gets a chunk of its own, so big arrays waste nothing. */
#define CHUNK_MIN (16u * 1024)
#define CHUNK_MAX (1024u * 1024)
#define ALIGN alignof(max_align_t)

struct chunk {
	struct chunk *next;
	size_t size; /* usable bytes after the header */
	alignas(max_align_t) unsigned char data[];
};

struct zt_arena {
	struct chunk *head; /* chunk being filled; older ones follow */
	size_t used;        /* bytes used in head */
	size_t next_size;   /* size of the next regular chunk */
	size_t footprint;
};

static long fail_after = -1;

void zt_arena_fail_after(long n)
{
	fail_after = n;
}

static void *checked_malloc(size_t n)
{
	if (fail_after >= 0 && fail_after-- == 0)
		return NULL;
	return malloc(n);
}

struct zt_arena *zt_arena_new(void)
{
	struct zt_arena *a = checked_malloc(sizeof(*a));
	if (!a)
		return NULL;
	a->head = NULL;
	a->used = 0;
	a->next_size = CHUNK_MIN;
	a->footprint = sizeof(*a);
	return a;
}

void zt_arena_destroy(struct zt_arena *a)
{
	if (!a)
		return;
	struct chunk *c = a->head;
	while (c) {
		struct chunk *next = c->next;
		free(c);
		c = next;
	}
	free(a);
}

static struct chunk *add_chunk(struct zt_arena *a, size_t size, bool make_head)
{
	if (size > SIZE_MAX - sizeof(struct chunk))
		return NULL;
	struct chunk *c = checked_malloc(sizeof(*c) + size);
	if (!c)
		return NULL;
	c->size = size;
	a->footprint += sizeof(*c) + size;
	if (make_head || !a->head) {
		c->next = a->head;
		a->head = c;
		a->used = 0;
	} else {
		/* A dedicated chunk goes behind the head, which keeps its free room. */
		c->next = a->head->next;
		a->head->next = c;
	}
	return c;
}

void *zt_arena_alloc(struct zt_arena *a, size_t size)
{
	if (size == 0)
		size = 1;
	if (size > SIZE_MAX - ALIGN)
		return NULL;
	size = (size + ALIGN - 1) & ~(size_t)(ALIGN - 1);
	if (a->head && a->head->size - a->used >= size) {
		void *p = a->head->data + a->used;
		a->used += size;
		return p;
	}
	if (size > a->next_size / 4) {
		/* Dedicated chunk; it becomes the (full) head only if there is none. */
		bool first = a->head == NULL;
		struct chunk *c = add_chunk(a, size, first);
		if (!c)
			return NULL;
		if (first)
			a->used = size;
		return c->data;
	}
	struct chunk *c = add_chunk(a, a->next_size, true);
	if (!c)
		return NULL;
	if (a->next_size < CHUNK_MAX)
		a->next_size *= 2;
	a->used = size;
	return c->data;
}

void *zt_arena_calloc(struct zt_arena *a, size_t n, size_t size)
{
	if (size && n > SIZE_MAX / size)
		return NULL;
	size_t total = n * size;
	void *p = zt_arena_alloc(a, total);
	if (p && total)
		memset(p, 0, total);
	return p;
}

char *zt_arena_strndup(struct zt_arena *a, const char *s, size_t len)
{
	if (len == SIZE_MAX)
		return NULL;
	char *p = zt_arena_alloc(a, len + 1);
	if (!p)
		return NULL;
	memcpy(p, s, len);
	p[len] = 0;
	return p;
}

char *zt_arena_strdup(struct zt_arena *a, const char *s)
{
	return zt_arena_strndup(a, s, strlen(s));
}

size_t zt_arena_footprint(const struct zt_arena *a)
{
	return a->footprint;
}
