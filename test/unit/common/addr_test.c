/* Unit tests for common/addr.c. */
#include "common/addr.h"

#include <errno.h>
#include <netinet/in.h>

#include "check.h"

int main(void)
{
	struct zt_ip ip, p;
	struct zt_sockaddr sa;
	char buf[ZT_ADDRSTRLEN];

	CHECK(zt_ip_parse("10.1.2.3", &ip) == 0 && ip.family == AF_INET);
	CHECK_STR(zt_ip_str(&ip, buf, sizeof(buf)), "10.1.2.3");
	CHECK(zt_ip_parse("fd00::1", &ip) == 0 && ip.family == AF_INET6);
	CHECK(zt_ip_parse("10.1.2.300", &ip) == -EINVAL);
	CHECK(zt_ip_parse("", &ip) == -EINVAL);

	CHECK(zt_sockaddr_parse("10.0.0.1:8080", &sa) == 0 && sa.port == 8080);
	CHECK_STR(zt_sockaddr_str(&sa, buf, sizeof(buf)), "10.0.0.1:8080");
	CHECK(zt_sockaddr_parse("[fd00::2]:15008", &sa) == 0 && sa.port == 15008);
	CHECK_STR(zt_sockaddr_str(&sa, buf, sizeof(buf)), "[fd00::2]:15008");
	CHECK(zt_sockaddr_parse("fd00::2:80", &sa) == -EINVAL);   /* needs brackets */
	CHECK(zt_sockaddr_parse("[10.0.0.1]:80", &sa) == -EINVAL); /* v4 in brackets */
	CHECK(zt_sockaddr_parse("10.0.0.1:65536", &sa) == -EINVAL);
	CHECK(zt_sockaddr_parse("10.0.0.1:", &sa) == -EINVAL);
	CHECK(zt_sockaddr_parse("10.0.0.1:8x", &sa) == -EINVAL);
	CHECK(zt_sockaddr_parse(":80", &sa) == -EINVAL);

	/* OS round trip, v4-mapped folds to v4 */
	struct sockaddr_storage ss;
	zt_sockaddr_parse("10.9.8.7:99", &sa);
	struct zt_sockaddr back;
	zt_sockaddr_to_os(&sa, &ss);
	CHECK(zt_sockaddr_from_os((struct sockaddr *)&ss, &back) == 0);
	CHECK(zt_ip_eq(&sa.ip, &back.ip) && back.port == 99);
	struct sockaddr_in6 m = {.sin6_family = AF_INET6, .sin6_port = htons(7)};
	m.sin6_addr.s6_addr[10] = m.sin6_addr.s6_addr[11] = 0xff;
	m.sin6_addr.s6_addr[12] = 10, m.sin6_addr.s6_addr[15] = 1;
	CHECK(zt_sockaddr_from_os((struct sockaddr *)&m, &back) == 0);
	CHECK(back.ip.family == AF_INET && back.port == 7);
	CHECK_STR(zt_ip_str(&back.ip, buf, sizeof(buf)), "10.0.0.1");

	/* prefixes */
	zt_ip_parse("10.77.0.0", &p);
	zt_ip_parse("10.77.3.9", &ip);
	CHECK(zt_ip_in_prefix(&ip, &p, 16));
	CHECK(!zt_ip_in_prefix(&ip, &p, 24));
	CHECK(zt_ip_in_prefix(&ip, &p, 0));
	CHECK(!zt_ip_in_prefix(&ip, &p, 33));
	zt_ip_parse("10.77.3.9", &p);
	CHECK(zt_ip_in_prefix(&ip, &p, 32));
	zt_ip_parse("10.77.2.128", &p);
	CHECK(zt_ip_in_prefix(&ip, &p, 23) && !zt_ip_in_prefix(&ip, &p, 24));
	zt_ip_parse("fd00::", &p);
	CHECK(!zt_ip_in_prefix(&ip, &p, 8)); /* family mismatch */

	/* hash: equal addresses hash equal, v4 ignores the unused bytes */
	struct zt_ip a, b;
	zt_ip_parse("1.2.3.4", &a);
	zt_ip_parse("1.2.3.4", &b);
	CHECK(zt_ip_hash(&a) == zt_ip_hash(&b));
	TEST_DONE();
}
