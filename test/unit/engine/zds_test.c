/* Unit tests for engine/zds.c: the ZDS client against hand-made datagrams on
 * a SOCK_SEQPACKET socketpair, including hostile ones. Checks that no file
 * descriptor leaks on any rejected request. */
#include "engine/zds.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pb_encode.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test/unit/common/check.h"
#include "zds.pb.h"

static int count_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the DIR's own fd */
}

/* Send a datagram with `nfds` copies of /dev/null as SCM_RIGHTS. */
static void send_raw(int fd, const void *p, size_t n, int nfds)
{
	int fds[4];
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(fds))];
	} ctl;
	struct iovec iov = {.iov_base = (void *)p, .iov_len = n};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	for (int i = 0; i < nfds; i++)
		fds[i] = open("/dev/null", O_RDONLY);
	if (nfds) {
		mh.msg_control = ctl.b;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	if (sendmsg(fd, &mh, 0) < 0)
		perror("sendmsg");
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
}

static void send_req(int fd, const istio_workload_zds_WorkloadRequest *r, int nfds)
{
	uint8_t buf[1024];
	pb_ostream_t os = pb_ostream_from_buffer(buf, sizeof(buf));
	if (!pb_encode(&os, istio_workload_zds_WorkloadRequest_fields, r))
		fprintf(stderr, "encode failed\n");
	send_raw(fd, buf, os.bytes_written, nfds);
}

static istio_workload_zds_WorkloadRequest add_req(const char *uid)
{
	istio_workload_zds_WorkloadRequest r = istio_workload_zds_WorkloadRequest_init_zero;
	r.which_payload = istio_workload_zds_WorkloadRequest_add_tag;
	snprintf(r.payload.add.uid, sizeof(r.payload.add.uid), "%s", uid);
	r.payload.add.has_workload_info = true;
	strcpy(r.payload.add.workload_info.name, "sleep-1");
	strcpy(r.payload.add.workload_info.namespace, "ambient-demo");
	strcpy(r.payload.add.workload_info.service_account, "sleep");
	return r;
}

int main(void)
{
	int sp[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp))
		return 77;
	struct zt_zds_session s = {.fd = sp[0]};
	struct zt_zds_msg m;
	char why[256];
	int base = count_fds();

	/* nothing there yet */
	CHECK(zt_zds_recv(&s, &m, why, sizeof(why)) == -EAGAIN);

	/* a good AddWorkload with one netns fd */
	istio_workload_zds_WorkloadRequest r = add_req("uid-1");
	send_req(sp[1], &r, 1);
	CHECK(zt_zds_recv(&s, &m, why, sizeof(why)) == 0);
	CHECK(m.kind == ZT_ZDS_ADD && m.netns_fd >= 0);
	CHECK_STR(m.uid, "uid-1");
	CHECK_STR(m.name, "sleep-1");
	CHECK_STR(m.namespace_, "ambient-demo");
	CHECK_STR(m.service_account, "sleep");
	close(m.netns_fd);

	/* AddWorkload without an fd, and with two: NACK, nothing leaks */
	send_req(sp[1], &r, 0);
	CHECK(zt_zds_recv(&s, &m, why, sizeof(why)) == -EBADMSG);
	CHECK(strstr(why, "carried 0 file descriptors, want 1") != NULL);
	send_req(sp[1], &r, 2);
	CHECK(zt_zds_recv(&s, &m, why, sizeof(why)) == -EBADMSG);
	CHECK(strstr(why, "carried 2 file descriptors") != NULL);
	CHECK(count_fds() == base);

	/* DelWorkload with an fd: rejected, fd closed */
	istio_workload_zds_WorkloadRequest d = istio_workload_zds_WorkloadRequest_init_zero;
	d.which_payload = istio_workload_zds_WorkloadRequest_del_tag;
	strcpy(d.payload.del.uid, "uid-1");
	send_req(sp[1], &d, 1);
	CHECK(zt_zds_recv(&s, &m, why, sizeof(why)) == -EBADMSG);
	CHECK(count_fds() == base);
	send_req(sp[1], &d, 0);
	CHECK(zt_zds_recv(&s, &m, why, sizeof(why)) == 0 && m.kind == ZT_ZDS_DEL);

	/* Keep is fine before SnapshotSent, a NACK after */
	istio_workload_zds_WorkloadRequest k = istio_workload_zds_WorkloadRequest_init_zero;
	k.which_payload = istio_workload_zds_WorkloadRequest_keep_tag;
	strcpy(k.payload.keep.uid, "uid-2");
	send_req(sp[1], &k, 0);
	CHECK(zt_zds_recv(&s, &m, why, sizeof(why)) == 0 && m.kind == ZT_ZDS_KEEP);
	istio_workload_zds_WorkloadRequest ss = istio_workload_zds_WorkloadRequest_init_zero;
	ss.which_payload = istio_workload_zds_WorkloadRequest_snapshot_sent_tag;
	send_req(sp[1], &ss, 0);
	CHECK(zt_zds_recv(&s, &m, why, sizeof(why)) == 0 && m.kind == ZT_ZDS_SNAPSHOT_SENT);
	CHECK(s.snapshot_done);
	send_req(sp[1], &k, 0);
	CHECK(zt_zds_recv(&s, &m, why, sizeof(why)) == -EBADMSG);
	CHECK(strstr(why, "after SnapshotSent") != NULL);

	/* empty uid, empty payload, garbage, truncated datagram */
	r = add_req("");
	send_req(sp[1], &r, 1);
	CHECK(zt_zds_recv(&s, &m, why, sizeof(why)) == -EBADMSG);
	CHECK(strstr(why, "without a uid") != NULL);
	send_raw(sp[1], "", 0, 0);
	CHECK(zt_zds_recv(&s, &m, why, sizeof(why)) == -EBADMSG);
	CHECK(strstr(why, "unknown or empty") != NULL);
	uint8_t junk[64];
	memset(junk, 0xff, sizeof(junk));
	send_raw(sp[1], junk, sizeof(junk), 1);
	CHECK(zt_zds_recv(&s, &m, why, sizeof(why)) == -EBADMSG);
	CHECK(strstr(why, "undecodable") != NULL);
	uint8_t big[2000] = {0};
	send_raw(sp[1], big, sizeof(big), 1);
	CHECK(zt_zds_recv(&s, &m, why, sizeof(why)) == -EBADMSG);
	CHECK(strstr(why, "truncated") != NULL);
	CHECK(count_fds() == base);

	/* ACK / NACK encoding: decoded by the other side */
	CHECK(zt_zds_ack(&s, NULL) == 0);
	CHECK(zt_zds_ack(&s, "bad request") == 0);
	uint8_t rb[1024];
	ssize_t n = recv(sp[1], rb, sizeof(rb), 0);
	CHECK(n == 2 && rb[0] == 0x0a && rb[1] == 0x00); /* ack{} */
	n = recv(sp[1], rb, sizeof(rb), 0);
	CHECK(n == 15 && rb[0] == 0x0a && rb[2] == 0x0a && !memcmp(rb + 4, "bad request", 11));

	/* istio-cni went away */
	close(sp[1]);
	CHECK(zt_zds_recv(&s, &m, why, sizeof(why)) == -ECONNRESET);
	close(sp[0]);
	TEST_DONE();
}
