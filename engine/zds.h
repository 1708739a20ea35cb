/* zds.h - the client side of istio-cni's ZDS protocol (in-pod capture).
 *
 * istio-cni's node agent listens on a SOCK_SEQPACKET unix socket (INPOD_UDS,
 * default /var/run/ztunnel/ztunnel.sock); zring connects, says ZdsHello, then
 * receives one WorkloadRequest per datagram: AddWorkload (with the pod's
 * network namespace fd as SCM_RIGHTS), KeepWorkload (only before
 * SnapshotSent), SnapshotSent, DelWorkload. Every request is answered with
 * WorkloadResponse{ack{error}}; an empty error is an ACK.
 *
 * Control thread only. Blocking I/O on a socket the caller polls.
 */
#ifndef ZT_ZDS_H
#define ZT_ZDS_H

#include <stdbool.h>
#include <stddef.h>

#define ZT_ZDS_DEFAULT_PATH "/var/run/ztunnel/ztunnel.sock"
/* istio-cni and ztunnel both use 1024-byte datagrams. */
#define ZT_ZDS_MAX_MSG 1024

enum zt_zds_kind { ZT_ZDS_ADD = 1, ZT_ZDS_KEEP, ZT_ZDS_DEL, ZT_ZDS_SNAPSHOT_SENT };

struct zt_zds_msg {
	enum zt_zds_kind kind;
	char uid[257];
	char name[257], namespace_[257], service_account[257];
	int netns_fd; /* ADD only; -1 otherwise. The caller owns it. */
};

/* Session state: which requests are allowed now. */
struct zt_zds_session {
	int fd;
	bool snapshot_done;
};

/* Connect to `path` and send ZdsHello{V1}. Returns 0 or -errno. */
int zt_zds_open(struct zt_zds_session *s, const char *path);
void zt_zds_close(struct zt_zds_session *s);

/* Receive and validate one request.
 * Returns 0 with *m filled (ADD carries exactly one fd);
 *   -ECONNRESET when istio-cni closed the socket;
 *   -EAGAIN when nothing is there (non-blocking);
 *   -EBADMSG for a request to NACK: `why` says what was wrong (truncated
 *     datagram, undecodable protobuf, unknown kind, missing or extra fds,
 *     KeepWorkload after SnapshotSent, empty uid). Any fd that came with a
 *     rejected request is closed here: no fd leaks.
 * Other negative errno: socket errors. */
int zt_zds_recv(struct zt_zds_session *s, struct zt_zds_msg *m, char *why, size_t whylen);

/* Answer the last request: error NULL or "" = ACK. Returns 0 or -errno. */
int zt_zds_ack(struct zt_zds_session *s, const char *error);

#endif
