#include "engine/sock.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* From linux/netfilter_ipv4.h and ip6_tables.h, which clash with netinet/in.h. */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

int zt_sock_listen(const struct zt_sockaddr *addr, int backlog, bool reuseport)
{
	struct sockaddr_storage ss;
	socklen_t sl = zt_sockaddr_to_os(addr, &ss);
	int one = 1, zero = 0;
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)))
		goto fail;
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, (struct sockaddr *)&ss, sl) || listen(fd, backlog))
		goto fail;
	return fd;
fail:;
	int e = -errno;
	close(fd);
	return e;
}

int zt_sock_original_dst(int fd, struct zt_sockaddr *out, bool *redirected)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	*redirected = false;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl))
		return -errno;
	struct sockaddr_storage od;
	socklen_t ol = sizeof(od);
	int r;
	if (ss.ss_family == AF_INET6 &&
	    !IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&ss)->sin6_addr))
		r = getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &od, &ol);
	else
		r = getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &od, &ol);
	if (r == 0) {
		*redirected = true;
		return zt_sockaddr_from_os((struct sockaddr *)&od, out);
	}
	return zt_sockaddr_from_os((struct sockaddr *)&ss, out);
}

int zt_sock_peer(int fd, struct zt_sockaddr *out)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getpeername(fd, (struct sockaddr *)&ss, &sl))
		return -errno;
	return zt_sockaddr_from_os((struct sockaddr *)&ss, out);
}

int zt_sock_upstream(int family)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
	if (fd < 0)
		return -errno;
	int mark = ZT_SOCKET_MARK;
	if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark))) {
		int e = -errno;
		close(fd);
		return e;
	}
	zt_sock_nodelay(fd);
	return fd;
}

int zt_sock_set_transparent(int fd)
{
	int one = 1;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl))
		return -errno;
	int r = ss.ss_family == AF_INET6
			? setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one))
			: setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one));
	return r ? -errno : 0;
}

int zt_sock_connect_result(int fd, int res)
{
	if (res == -ECANCELED)
		return -ETIMEDOUT;
	if (res == 0) {
		int err = 0;
		socklen_t l = sizeof(err);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) == 0 && err)
			return -err;
	}
	return res;
}

void zt_sock_nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void zt_sock_set_rst(int fd)
{
	struct linger l = {.l_onoff = 1, .l_linger = 0};
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
}
