"""An istio-cni stand-in that speaks ZDS, for tests.

Independent of zring's C code: the messages are built by python3-protobuf
from xds/proto/zds.proto (compiled at import time with grpc_tools.protoc), and
the netns file descriptors are passed with socket.send_fds. Like istio-cni's
node agent, it listens on a SOCK_SEQPACKET socket and waits for the proxy.
"""
import os
import socket
import subprocess
import sys
import tempfile

_HERE = os.path.dirname(os.path.abspath(__file__))
_PROTO_DIR = os.path.join(_HERE, "..", "..", "xds", "proto")


def _load_pb():
    out = tempfile.mkdtemp(prefix="zt-zds-pb-")
    r = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", _PROTO_DIR,
                        "--python_out", out, os.path.join(_PROTO_DIR, "zds.proto")],
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError("protoc failed: " + r.stderr)
    sys.path.insert(0, out)
    import zds_pb2  # noqa: E402
    return zds_pb2


pb = _load_pb()


class CniStandin:
    """One listening socket; accept() the proxy, then drive it."""

    def __init__(self, path):
        self.path = path
        if os.path.exists(path):
            os.unlink(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.srv.bind(path)
        self.srv.listen(4)
        self.conn = None

    def accept(self, timeout=10.0):
        self.srv.settimeout(timeout)
        self.conn, _ = self.srv.accept()
        self.conn.settimeout(timeout)
        hello = pb.ZdsHello()
        hello.ParseFromString(self.conn.recv(1024))
        if hello.version != pb.V1:
            raise AssertionError("unexpected hello version %r" % hello.version)
        return hello

    def _ack(self):
        resp = pb.WorkloadResponse()
        resp.ParseFromString(self.conn.recv(1024))
        if resp.WhichOneof("payload") != "ack":
            raise AssertionError("expected an ack, got %r" % resp)
        return resp.ack.error

    def send_raw(self, data, fds=()):
        if fds:
            socket.send_fds(self.conn, [data], list(fds))
        else:
            self.conn.send(data)
        return self._ack()

    def add(self, uid, netns_path, name="", namespace="", service_account="", nfds=1):
        req = pb.WorkloadRequest()
        req.add.uid = uid
        req.add.workload_info.name = name
        req.add.workload_info.namespace = namespace
        req.add.workload_info.service_account = service_account
        fds = [os.open(netns_path, os.O_RDONLY) for _ in range(nfds)]
        try:
            return self.send_raw(req.SerializeToString(), fds)
        finally:
            for fd in fds:
                os.close(fd)

    def keep(self, uid):
        req = pb.WorkloadRequest()
        req.keep.uid = uid
        return self.send_raw(req.SerializeToString())

    def delete(self, uid):
        req = pb.WorkloadRequest()
        getattr(req, "del").uid = uid  # 'del' is a Python keyword
        return self.send_raw(req.SerializeToString())

    def snapshot_sent(self):
        req = pb.WorkloadRequest()
        req.snapshot_sent.SetInParent()
        return self.send_raw(req.SerializeToString())

    def close_conn(self):
        if self.conn:
            self.conn.close()
            self.conn = None

    def close(self):
        self.close_conn()
        self.srv.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
