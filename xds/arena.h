/* arena.h - bump allocator for one snapshot (or one parse).
 *
 * Control thread only (an arena is never shared while it is being filled).
 * Memory comes in chunks; everything is released at once by zt_arena_destroy().
 * Allocation returns NULL when malloc fails; callers turn that into -ENOMEM.
 */
#ifndef ZT_ARENA_H
#define ZT_ARENA_H

#include <stddef.h>

struct zt_arena;

/* Returns a new arena, or NULL on out-of-memory. */
struct zt_arena *zt_arena_new(void);
/* Frees every allocation made from `a`, and `a` itself. NULL is allowed. */
void zt_arena_destroy(struct zt_arena *a);

/* `size` bytes aligned for any type; contents undefined. NULL on OOM. */
void *zt_arena_alloc(struct zt_arena *a, size_t size);
/* Like zt_arena_alloc, zero-filled; `n * size` overflow yields NULL. */
void *zt_arena_calloc(struct zt_arena *a, size_t n, size_t size);
/* Copy `len` bytes of `s` plus a terminating NUL. NULL on OOM. */
char *zt_arena_strndup(struct zt_arena *a, const char *s, size_t len);
char *zt_arena_strdup(struct zt_arena *a, const char *s);
/* Bytes obtained from malloc so far (chunk sizes), for tests and stats. */
size_t zt_arena_footprint(const struct zt_arena *a);

/* Test hook: make the n-th following malloc made by arenas fail (0 = the next
 * one); a negative value disables the injection. Not thread-safe; tests only. */
void zt_arena_fail_after(long n);

#endif
