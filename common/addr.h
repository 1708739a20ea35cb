/* addr.h - IPv4/IPv6 addresses and ip:port endpoints.
 * Any thread. Pure functions, no allocation. */
#ifndef ZT_ADDR_H
#define ZT_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* An IP address. IPv4 is kept in the first 4 bytes of `b`, the rest zero. */
struct zt_ip {
	uint8_t family; /* AF_INET or AF_INET6; 0 = unset */
	uint8_t b[16];
};

/* An ip:port endpoint. */
struct zt_sockaddr {
	struct zt_ip ip;
	uint16_t port; /* host order */
};

/* Longest text form: "[v6]:65535" plus NUL. */
#define ZT_ADDRSTRLEN 56

/* Parse "1.2.3.4" or "::1" (no brackets). Returns 0 or -EINVAL. */
int zt_ip_parse(const char *s, struct zt_ip *out);
/* Parse "1.2.3.4:80" or "[::1]:80". Returns 0 or -EINVAL. */
int zt_sockaddr_parse(const char *s, struct zt_sockaddr *out);
/* Format an IP; returns `buf`. */
const char *zt_ip_str(const struct zt_ip *ip, char *buf, size_t len);
/* Format "ip:port" ("[v6]:port"); returns `buf`. */
const char *zt_sockaddr_str(const struct zt_sockaddr *sa, char *buf, size_t len);
bool zt_ip_eq(const struct zt_ip *a, const struct zt_ip *b);
uint64_t zt_ip_hash(const struct zt_ip *ip);
/* Fill a sockaddr_storage; returns its length. IPv4 stays AF_INET. */
socklen_t zt_sockaddr_to_os(const struct zt_sockaddr *sa, struct sockaddr_storage *ss);
/* From an OS address; v4-mapped IPv6 becomes IPv4. Returns 0 or -EAFNOSUPPORT. */
int zt_sockaddr_from_os(const struct sockaddr *s, struct zt_sockaddr *out);
/* Does `ip` fall in prefix/len? Families must match. */
bool zt_ip_in_prefix(const struct zt_ip *ip, const struct zt_ip *prefix, unsigned len);

#endif
