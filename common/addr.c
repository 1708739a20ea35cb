#include "common/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int zt_ip_parse(const char *s, struct zt_ip *out)
{
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, s, out->b) == 1) {
		out->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, out->b) == 1) {
		out->family = AF_INET6;
		return 0;
	}
	memset(out, 0, sizeof(*out));
	return -EINVAL;
}

int zt_sockaddr_parse(const char *s, struct zt_sockaddr *out)
{
	char host[64];
	const char *colon, *hs = s;
	size_t hl;

	memset(out, 0, sizeof(*out));
	if (*s == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':')
			return -EINVAL;
		hs = s + 1;
		hl = (size_t)(rb - hs);
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || memchr(s, ':', (size_t)(colon - s)))
			return -EINVAL; /* bare IPv6 needs brackets */
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, hs, hl);
	host[hl] = 0;
	if (zt_ip_parse(host, &out->ip))
		return -EINVAL;
	if (*s == '[' && out->ip.family != AF_INET6)
		return -EINVAL;
	char *end;
	errno = 0;
	unsigned long p = strtoul(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || p > 65535)
		return -EINVAL;
	out->port = (uint16_t)p;
	return 0;
}

const char *zt_ip_str(const struct zt_ip *ip, char *buf, size_t len)
{
	if (!ip->family || !inet_ntop(ip->family, ip->b, buf, (socklen_t)len))
		snprintf(buf, len, "unknown");
	return buf;
}

const char *zt_sockaddr_str(const struct zt_sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];
	zt_ip_str(&sa->ip, ip, sizeof(ip));
	if (sa->ip.family == AF_INET6)
		snprintf(buf, len, "[%s]:%u", ip, sa->port);
	else
		snprintf(buf, len, "%s:%u", ip, sa->port);
	return buf;
}

bool zt_ip_eq(const struct zt_ip *a, const struct zt_ip *b)
{
	return a->family == b->family && memcmp(a->b, b->b, 16) == 0;
}

uint64_t zt_ip_hash(const struct zt_ip *ip)
{
	/* FNV-1a over family and bytes: small keys, good enough spread. */
	uint64_t h = 1469598103934665603ULL ^ ip->family;
	size_t n = ip->family == AF_INET ? 4 : 16;
	for (size_t i = 0; i < n; i++) {
		h ^= ip->b[i];
		h *= 1099511628211ULL;
	}
	return h ^ (h >> 29);
}

socklen_t zt_sockaddr_to_os(const struct zt_sockaddr *sa, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (sa->ip.family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;
		in->sin_family = AF_INET;
		in->sin_port = htons(sa->port);
		memcpy(&in->sin_addr, sa->ip.b, 4);
		return sizeof(*in);
	}
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(sa->port);
	memcpy(&in6->sin6_addr, sa->ip.b, 16);
	return sizeof(*in6);
}

int zt_sockaddr_from_os(const struct sockaddr *s, struct zt_sockaddr *out)
{
	memset(out, 0, sizeof(*out));
	if (s->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)s;
		out->ip.family = AF_INET;
		memcpy(out->ip.b, &in->sin_addr, 4);
		out->port = ntohs(in->sin_port);
		return 0;
	}
	if (s->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)s;
		out->port = ntohs(in6->sin6_port);
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			out->ip.family = AF_INET;
			memcpy(out->ip.b, &in6->sin6_addr.s6_addr[12], 4);
		} else {
			out->ip.family = AF_INET6;
			memcpy(out->ip.b, &in6->sin6_addr, 16);
		}
		return 0;
	}
	return -EAFNOSUPPORT;
}

bool zt_ip_in_prefix(const struct zt_ip *ip, const struct zt_ip *prefix, unsigned len)
{
	if (ip->family != prefix->family)
		return false;
	unsigned max = ip->family == AF_INET ? 32 : 128;
	if (len > max)
		return false;
	unsigned full = len / 8, rem = len % 8;
	if (memcmp(ip->b, prefix->b, full))
		return false;
	if (!rem)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rem));
	return (ip->b[full] & mask) == (prefix->b[full] & mask);
}
