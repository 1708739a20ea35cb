/* clock.h - monotonic and wall time. Any thread. */
#ifndef ZT_CLOCK_H
#define ZT_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t zt_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static inline uint64_t zt_now_ms(void)
{
	return zt_now_ns() / 1000000ULL;
}

#endif
