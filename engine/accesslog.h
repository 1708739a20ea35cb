/* accesslog.h - one line per finished connection, ztunnel's fields.
 * Shard thread. */
#ifndef ZT_ACCESSLOG_H
#define ZT_ACCESSLOG_H

struct zt_conn;

/* Logs target "access", message "connection complete" at info (error when the
 * connection failed, with an `error` field). bytes_sent counts bytes from the
 * source towards the destination, bytes_recv the reply direction. */
void zt_access_log(const struct zt_conn *c);

#endif
