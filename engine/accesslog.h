/* accesslog.h - one line per finished connection, ztunnel's fields.
 * Shard thread. */
#ifndef ZT_ACCESSLOG_H
#define ZT_ACCESSLOG_H

struct zt_conn;

/* Logs target "access", message "connection complete" at info (error when the
 * connection failed, with an `error` field). As in ztunnel, bytes_sent is
 * what zring sent on: towards the destination for outbound connections, back
 * to the source for inbound ones; bytes_recv the other way. */
void zt_access_log(const struct zt_conn *c);

#endif
