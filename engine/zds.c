#include "engine/zds.h"

#include <errno.h>
#include <pb_decode.h>
#include <pb_encode.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "zds.pb.h"

#define MAX_FDS 8 /* we accept one; room to see (and close) a few extra */

int zt_zds_open(struct zt_zds_session *s, const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memset(s, 0, sizeof(*s));
	s->fd = -1;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int e = -errno;
		close(fd);
		return e;
	}
	uint8_t buf[16];
	istio_workload_zds_ZdsHello hello = {.version = istio_workload_zds_Version_V1};
	pb_ostream_t os = pb_ostream_from_buffer(buf, sizeof(buf));
	if (!pb_encode(&os, istio_workload_zds_ZdsHello_fields, &hello) ||
	    send(fd, buf, os.bytes_written, MSG_NOSIGNAL) != (ssize_t)os.bytes_written) {
		int e = errno ? -errno : -EIO;
		close(fd);
		return e;
	}
	s->fd = fd;
	return 0;
}

void zt_zds_close(struct zt_zds_session *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	s->snapshot_done = false;
}

static void close_fds(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

int zt_zds_recv(struct zt_zds_session *s, struct zt_zds_msg *m, char *why, size_t whylen)
{
	uint8_t buf[ZT_ZDS_MAX_MSG];
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int) * MAX_FDS)];
	} ctl;
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
			    .msg_controllen = sizeof(ctl.b)};
	int fds[MAX_FDS], nfds = 0;

	memset(m, 0, sizeof(*m));
	m->netns_fd = -1;
	why[0] = 0;
	ssize_t n = recvmsg(s->fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? -EAGAIN : -errno;
	if (n == 0 && mh.msg_controllen == 0) {
		/* SEQPACKET: 0 is either an empty datagram or the peer's close. */
		struct pollfd p = {.fd = s->fd, .events = POLLRDHUP};
		if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLRDHUP)))
			return -ECONNRESET;
	}
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (int i = 0; i < k && nfds < MAX_FDS; i++)
			memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	}
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		snprintf(why, whylen, "%s", (mh.msg_flags & MSG_TRUNC)
					      ? "message truncated: larger than 1024 bytes"
					      : "ancillary data truncated: too many file descriptors");
		goto reject;
	}

	istio_workload_zds_WorkloadRequest req = istio_workload_zds_WorkloadRequest_init_zero;
	pb_istream_t is = pb_istream_from_buffer(buf, (size_t)n);
	if (!pb_decode(&is, istio_workload_zds_WorkloadRequest_fields, &req)) {
		snprintf(why, whylen, "undecodable WorkloadRequest: %s", PB_GET_ERROR(&is));
		goto reject;
	}
	int want_fds = 0;
	switch (req.which_payload) {
	case istio_workload_zds_WorkloadRequest_add_tag:
		m->kind = ZT_ZDS_ADD;
		snprintf(m->uid, sizeof(m->uid), "%s", req.payload.add.uid);
		if (req.payload.add.has_workload_info) {
			const istio_workload_zds_WorkloadInfo *wi = &req.payload.add.workload_info;
			snprintf(m->name, sizeof(m->name), "%s", wi->name);
			snprintf(m->namespace_, sizeof(m->namespace_), "%s", wi->namespace);
			snprintf(m->service_account, sizeof(m->service_account), "%s", wi->service_account);
		}
		want_fds = 1;
		break;
	case istio_workload_zds_WorkloadRequest_keep_tag:
		m->kind = ZT_ZDS_KEEP;
		snprintf(m->uid, sizeof(m->uid), "%s", req.payload.keep.uid);
		if (s->snapshot_done) {
			snprintf(why, whylen, "KeepWorkload %s after SnapshotSent", m->uid);
			goto reject;
		}
		break;
	case istio_workload_zds_WorkloadRequest_del_tag:
		m->kind = ZT_ZDS_DEL;
		snprintf(m->uid, sizeof(m->uid), "%s", req.payload.del.uid);
		break;
	case istio_workload_zds_WorkloadRequest_snapshot_sent_tag:
		m->kind = ZT_ZDS_SNAPSHOT_SENT;
		break;
	default:
		snprintf(why, whylen, "unknown or empty WorkloadRequest payload");
		goto reject;
	}
	if (m->kind != ZT_ZDS_SNAPSHOT_SENT && !m->uid[0]) {
		snprintf(why, whylen, "request without a uid");
		goto reject;
	}
	if (nfds != want_fds) {
		snprintf(why, whylen, "%s for %s carried %d file descriptors, want %d",
			 m->kind == ZT_ZDS_ADD ? "AddWorkload" : "request", m->uid, nfds, want_fds);
		goto reject;
	}
	if (want_fds)
		m->netns_fd = fds[0];
	if (m->kind == ZT_ZDS_SNAPSHOT_SENT)
		s->snapshot_done = true;
	return 0;
reject:
	close_fds(fds, nfds);
	m->netns_fd = -1;
	return -EBADMSG;
}

int zt_zds_ack(struct zt_zds_session *s, const char *error)
{
	uint8_t buf[ZT_ZDS_MAX_MSG];
	istio_workload_zds_WorkloadResponse resp = istio_workload_zds_WorkloadResponse_init_zero;
	resp.which_payload = istio_workload_zds_WorkloadResponse_ack_tag;
	snprintf(resp.payload.ack.error, sizeof(resp.payload.ack.error), "%s", error ? error : "");
	pb_ostream_t os = pb_ostream_from_buffer(buf, sizeof(buf));
	if (!pb_encode(&os, istio_workload_zds_WorkloadResponse_fields, &resp))
		return -EMSGSIZE;
	if (send(s->fd, buf, os.bytes_written, MSG_NOSIGNAL) != (ssize_t)os.bytes_written)
		return errno ? -errno : -EIO;
	return 0;
}
