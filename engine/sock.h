/* sock.h - socket helpers used by shards and the control thread. Any thread. */
#ifndef ZT_SOCK_H
#define ZT_SOCK_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/addr.h"

/* The mark that keeps zring's own sockets out of the capture rules (0x539). */
#define ZT_SOCKET_MARK 1337

/* A TCP listener on `addr` with SO_REUSEPORT (and SO_REUSEADDR). IPv6 listeners
 * are dual-stack. Returns the fd or -errno. */
int zt_sock_listen(const struct zt_sockaddr *addr, int backlog, bool reuseport);
/* The destination before the iptables REDIRECT; falls back to the local
 * address. *redirected tells which. Returns 0 or -errno. */
int zt_sock_original_dst(int fd, struct zt_sockaddr *out, bool *redirected);
int zt_sock_peer(int fd, struct zt_sockaddr *out);
/* A TCP socket for an upstream connection, marked ZT_SOCKET_MARK. */
int zt_sock_upstream(int family);
void zt_sock_nodelay(int fd);
/* IP_TRANSPARENT (IPV6_TRANSPARENT): a listener that accepts what TPROXY
 * rules hand it (istio-cni's in-pod inbound capture). Needs CAP_NET_ADMIN.
 * Returns 0 or -errno. */
int zt_sock_set_transparent(int fd);
/* The outcome of an io_uring connect on `fd` whose completion gave `res`:
 * -ETIMEDOUT when its linked timeout cancelled it, the error left on the
 * socket when it "succeeded" anyway (seen on 6.18: a connect refused by ICMP
 * host unreachable completes with 0), else `res`. */
int zt_sock_connect_result(int fd, int res);
/* Make the next close() send RST instead of FIN. */
void zt_sock_set_rst(int fd);
/* A send or receive that completed with -EINTR or -EAGAIN moved nothing and
 * is issued again; any other error ends the connection. Seen on 6.18: a
 * 1 MiB send under load completed with -EINTR (where in io_uring it comes
 * from was not traced). */
static inline bool zt_io_retry(int res)
{
	return res == -EINTR || res == -EAGAIN;
}

#endif
