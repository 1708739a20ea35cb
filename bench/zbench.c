/* zbench: small load tools for bench/run.py (plain libc, epoll).
 *
 *   zbench server   -p PORT [-b ADDR] [-t THREADS]
 *       Echo server: every byte received is sent back; closes when the peer closes.
 *   zbench pingpong -c ADDR:PORT -s SIZE [-n COUNT] [-d SECONDS] [-w WARMUP] [-r RATE]
 *       One connection; send SIZE bytes, wait for SIZE bytes back, repeat, at most
 *       RATE round trips per second if given (a round trip starts 1/RATE s after
 *       the previous one started, or at once when that is past: no bursts).
 *       Prints one JSON line with round-trip percentiles in microseconds.
 *   zbench connrate -c ADDR:PORT [-s SIZE] [-C CONCURRENCY] [-n COUNT] [-d SECONDS]
 *       CONCURRENCY loops, each: connect, send SIZE bytes, read SIZE bytes, close.
 *       Prints one JSON line with connections/s and per-connection latency.
 *   zbench hold     -c ADDR:PORT -n COUNT [-d SECONDS] [-P PARALLEL]
 *       Opens COUNT connections (at most PARALLEL connecting at once), does a 1-byte
 *       round trip on each, prints "ready OK FAILED", then holds them until stdin
 *       reaches EOF or SECONDS pass, and exits.
 *
 * Every loop is bounded by a count and a time limit.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void die(const char *what)
{
    perror(what);
    exit(2);
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int parse_addr(const char *s, struct sockaddr_in *sa)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof host)
        return -1;
    memcpy(host, s, colon - s);
    host[colon - s] = 0;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons(atoi(colon + 1));
    return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const uint64_t *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    if (i >= n)
        i = n - 1;
    return v[i] / 1000.0;
}

static void print_lat(const char *prefix, uint64_t *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    printf("%s\"samples\":%zu,\"mean_us\":%.2f,\"p50_us\":%.2f,\"p90_us\":%.2f,"
           "\"p99_us\":%.2f,\"p999_us\":%.2f,\"max_us\":%.2f",
           prefix, n, n ? sum / n / 1000.0 : 0, pct(v, n, 50), pct(v, n, 90),
           pct(v, n, 99), pct(v, n, 99.9), n ? v[n - 1] / 1000.0 : 0);
}

/* ---------------------------------------------------------------- server */

struct srv_arg {
    struct sockaddr_in sa;
};

#define SRV_BUF (256 * 1024)

static void *server_thread(void *p)
{
    struct srv_arg *a = p;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&a->sa, sizeof a->sa) < 0)
        die("bind");
    if (listen(lfd, 4096) < 0)
        die("listen");
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    char *buf = malloc(SRV_BUF);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                for (int k = 0; k < 64; k++) {
                    int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                    if (c < 0)
                        break;
                    set_nodelay(c);
                    struct epoll_event ce = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                }
                continue;
            }
            /* Echo. Writes on these small request/response flows never block for
             * long; if the socket is full we wait for it (bounded by the peer). */
            ssize_t r = recv(fd, buf, SRV_BUF, 0);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN)
                    continue;
                close(fd);
                continue;
            }
            ssize_t off = 0;
            while (off < r) {
                ssize_t w = send(fd, buf + off, r - off, MSG_NOSIGNAL);
                if (w < 0) {
                    if (errno == EAGAIN) {
                        struct pollfd pf = {.fd = fd, .events = POLLOUT};
                        if (poll(&pf, 1, 5000) <= 0)
                            break;
                        continue;
                    }
                    break;
                }
                off += w;
            }
            if (off < r)
                close(fd);
        }
    }
    return NULL;
}

static int cmd_server(int argc, char **argv)
{
    const char *bindaddr = "0.0.0.0";
    int port = 9000, threads = 1, opt;
    while ((opt = getopt(argc, argv, "p:b:t:")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'b': bindaddr = optarg; break;
        case 't': threads = atoi(optarg); break;
        default: return 1;
        }
    }
    if (threads < 1)
        threads = 1;
    struct srv_arg a;
    char spec[80];
    snprintf(spec, sizeof spec, "%s:%d", bindaddr, port);
    if (parse_addr(spec, &a.sa) < 0)
        return 1;
    pthread_t t;
    for (int i = 1; i < threads; i++)
        pthread_create(&t, NULL, server_thread, &a);
    server_thread(&a);
    return 0;
}

/* -------------------------------------------------------------- pingpong */

static int connect_blocking(const struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        die("socket");
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) < 0)
        die("connect");
    set_nodelay(fd);
    return fd;
}

static int xfer_all(int fd, char *buf, size_t n, int wr)
{
    size_t off = 0;
    while (off < n) {
        ssize_t r = wr ? send(fd, buf + off, n - off, MSG_NOSIGNAL) : recv(fd, buf + off, n - off, 0);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            return -1;
        }
        off += r;
    }
    return 0;
}

static int cmd_pingpong(int argc, char **argv)
{
    const char *target = NULL;
    size_t size = 1, count = 100000, warmup = 200;
    double dur = 5, rate = 0;
    int opt;
    while ((opt = getopt(argc, argv, "c:s:n:d:w:r:")) != -1) {
        switch (opt) {
        case 'c': target = optarg; break;
        case 's': size = strtoul(optarg, NULL, 0); break;
        case 'n': count = strtoul(optarg, NULL, 0); break;
        case 'd': dur = atof(optarg); break;
        case 'w': warmup = strtoul(optarg, NULL, 0); break;
        case 'r': rate = atof(optarg); break;
        default: return 1;
        }
    }
    struct sockaddr_in sa;
    if (!target || parse_addr(target, &sa) < 0 || size == 0 || count == 0 || rate < 0) {
        fprintf(stderr, "pingpong: bad arguments\n");
        return 1;
    }
    int fd = connect_blocking(&sa);
    char *buf = malloc(size);
    memset(buf, 'p', size);
    uint64_t *lat = malloc(count * sizeof *lat);
    for (size_t i = 0; i < warmup; i++)
        if (xfer_all(fd, buf, size, 1) < 0 || xfer_all(fd, buf, size, 0) < 0)
            die("pingpong warmup");
    size_t n = 0;
    double t0 = now_s(), deadline = t0 + dur;
    uint64_t gap = rate > 0 ? (uint64_t)(1e9 / rate) : 0, next = now_ns();
    while (n < count) {
        if (gap) {
            uint64_t t = now_ns();
            if (next > t) {
                struct timespec ts = {(time_t)((next - t) / 1000000000u), (long)((next - t) % 1000000000u)};
                nanosleep(&ts, NULL);
            }
            t = now_ns();
            next = (next > t ? next : t) + gap;
        }
        uint64_t a = now_ns();
        if (xfer_all(fd, buf, size, 1) < 0 || xfer_all(fd, buf, size, 0) < 0)
            die("pingpong");
        lat[n++] = now_ns() - a;
        if ((n & 63) == 0 && now_s() > deadline)
            break;
    }
    double el = now_s() - t0;
    close(fd);
    printf("{\"mode\":\"pingpong\",\"size\":%zu,\"secs\":%.3f,\"rtt_per_s\":%.1f,", size, el, n / el);
    print_lat("", lat, n);
    printf("}\n");
    return 0;
}

/* -------------------------------------------------------------- connrate */

enum { C_IDLE, C_CONNECTING, C_SENDING, C_RECEIVING };

struct conn {
    int fd;
    int state;
    size_t off;
    uint64_t start;
};

static int cmd_connrate(int argc, char **argv)
{
    const char *target = NULL;
    size_t size = 1024, count = 1000000;
    int conc = 16, opt;
    double dur = 5;
    while ((opt = getopt(argc, argv, "c:s:n:d:C:")) != -1) {
        switch (opt) {
        case 'c': target = optarg; break;
        case 's': size = strtoul(optarg, NULL, 0); break;
        case 'n': count = strtoul(optarg, NULL, 0); break;
        case 'd': dur = atof(optarg); break;
        case 'C': conc = atoi(optarg); break;
        default: return 1;
        }
    }
    struct sockaddr_in sa;
    if (!target || parse_addr(target, &sa) < 0 || conc < 1 || size == 0) {
        fprintf(stderr, "connrate: bad arguments\n");
        return 1;
    }
    raise_nofile();
    char *wbuf = malloc(size), *rbuf = malloc(size);
    memset(wbuf, 'q', size);
    struct conn *cs = calloc(conc, sizeof *cs);
    uint64_t *lat = malloc(count * sizeof *lat);
    int ep = epoll_create1(0);
    size_t started = 0, done = 0, errors = 0;
    double t0 = now_s(), deadline = t0 + dur;
    int stopping = 0;

#define START(c)                                                                     \
    do {                                                                             \
        (c)->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);                   \
        set_nodelay((c)->fd);                                                        \
        (c)->start = now_ns();                                                       \
        (c)->off = 0;                                                                \
        started++;                                                                   \
        int rc_ = connect((c)->fd, (struct sockaddr *)&sa, sizeof sa);              \
        (c)->state = (rc_ == 0) ? C_SENDING : C_CONNECTING;                          \
        if (rc_ < 0 && errno != EINPROGRESS) {                                       \
            errors++;                                                                \
            close((c)->fd);                                                          \
            (c)->state = C_IDLE;                                                     \
            break;                                                                   \
        }                                                                            \
        struct epoll_event e_ = {.events = EPOLLOUT, .data.ptr = (c)};               \
        epoll_ctl(ep, EPOLL_CTL_ADD, (c)->fd, &e_);                                  \
    } while (0)

    for (int i = 0; i < conc && started < count; i++)
        START(&cs[i]);
    struct epoll_event evs[256];
    int active = 0;
    for (int i = 0; i < conc; i++)
        active += cs[i].state != C_IDLE;
    while (active > 0) {
        int n = epoll_wait(ep, evs, 256, 1000);
        double t = now_s();
        if (t > deadline + 5) /* hard stop: something hangs */
            break;
        if (t > deadline)
            stopping = 1;
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            int fail = 0, finished = 0;
            if (c->state == C_CONNECTING) {
                int err = 0;
                socklen_t l = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
                if (err)
                    fail = 1;
                else
                    c->state = C_SENDING;
            }
            if (!fail && c->state == C_SENDING) {
                ssize_t w = send(c->fd, wbuf + c->off, size - c->off, MSG_NOSIGNAL);
                if (w < 0 && errno != EAGAIN)
                    fail = 1;
                else if (w > 0 && (c->off += w) == size) {
                    c->off = 0;
                    c->state = C_RECEIVING;
                    struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
                }
            } else if (!fail && c->state == C_RECEIVING) {
                ssize_t r = recv(c->fd, rbuf, size - c->off, 0);
                if (r == 0 || (r < 0 && errno != EAGAIN))
                    fail = 1;
                else if (r > 0 && (c->off += r) == size)
                    finished = 1;
            }
            if (fail || finished) {
                if (finished && done < count)
                    lat[done++] = now_ns() - c->start;
                if (fail)
                    errors++;
                close(c->fd); /* also removes it from epoll */
                c->state = C_IDLE;
                active--;
                if (!stopping && started < count) {
                    START(c);
                    if (c->state != C_IDLE)
                        active++;
                }
            }
        }
    }
    double el = now_s() - t0;
    printf("{\"mode\":\"connrate\",\"size\":%zu,\"concurrency\":%d,\"secs\":%.3f,"
           "\"conns\":%zu,\"errors\":%zu,\"unfinished\":%d,\"conns_per_s\":%.1f,",
           size, conc, el, done, errors, active, done / el);
    print_lat("", lat, done);
    printf("}\n");
    return 0;
}

/* ------------------------------------------------------------------ hold */

struct hconn {
    int fd;
    int state; /* 0 connecting, 1 waiting echo, 2 ok, 3 failed */
};

static int cmd_hold(int argc, char **argv)
{
    const char *target = NULL;
    int count = 10000, parallel = 256, opt;
    double dur = 120;
    while ((opt = getopt(argc, argv, "c:n:d:P:")) != -1) {
        switch (opt) {
        case 'c': target = optarg; break;
        case 'n': count = atoi(optarg); break;
        case 'd': dur = atof(optarg); break;
        case 'P': parallel = atoi(optarg); break;
        default: return 1;
        }
    }
    struct sockaddr_in sa;
    if (!target || parse_addr(target, &sa) < 0 || count < 1 || parallel < 1) {
        fprintf(stderr, "hold: bad arguments\n");
        return 1;
    }
    raise_nofile();
    struct hconn *hs = calloc(count, sizeof *hs);
    int ep = epoll_create1(0);
    int next = 0, pending = 0, ok = 0, failed = 0;
    double t0 = now_s(), deadline = t0 + dur;
    struct epoll_event evs[256];
    while (ok + failed < count && now_s() < deadline) {
        while (pending < parallel && next < count) {
            struct hconn *h = &hs[next++];
            h->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            if (h->fd < 0) {
                h->state = 3;
                failed++;
                continue;
            }
            if (connect(h->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
                close(h->fd);
                h->fd = -1;
                h->state = 3;
                failed++;
                continue;
            }
            struct epoll_event e = {.events = EPOLLOUT, .data.ptr = h};
            epoll_ctl(ep, EPOLL_CTL_ADD, h->fd, &e);
            pending++;
        }
        int n = epoll_wait(ep, evs, 256, 200);
        for (int i = 0; i < n; i++) {
            struct hconn *h = evs[i].data.ptr;
            int bad = 0;
            if (h->state == 0) {
                int err = 0;
                socklen_t l = sizeof err;
                getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &l);
                if (err || send(h->fd, "h", 1, MSG_NOSIGNAL) != 1) {
                    bad = 1;
                } else {
                    h->state = 1;
                    struct epoll_event e = {.events = EPOLLIN, .data.ptr = h};
                    epoll_ctl(ep, EPOLL_CTL_MOD, h->fd, &e);
                }
            } else if (h->state == 1) {
                char c;
                ssize_t r = recv(h->fd, &c, 1, 0);
                if (r == 1) {
                    h->state = 2;
                    ok++;
                    pending--;
                    epoll_ctl(ep, EPOLL_CTL_DEL, h->fd, NULL);
                } else if (r == 0 || errno != EAGAIN) {
                    bad = 1;
                }
            }
            if (bad) {
                close(h->fd);
                h->fd = -1;
                h->state = 3;
                failed++;
                pending--;
            }
        }
    }
    printf("ready %d %d %.3f\n", ok, count - ok, now_s() - t0);
    fflush(stdout);
    /* Hold until stdin closes or the time limit. */
    for (;;) {
        double left = deadline - now_s();
        if (left <= 0)
            break;
        struct pollfd pf = {.fd = 0, .events = POLLIN};
        int r = poll(&pf, 1, (int)(left * 1000) + 1);
        if (r > 0) {
            char b[64];
            if (read(0, b, sizeof b) <= 0)
                break;
        } else if (r == 0) {
            break;
        }
    }
    /* Check the held connections are still alive (no EOF/RST seen). */
    int alive = 0;
    for (int i = 0; i < count; i++) {
        if (hs[i].state != 2)
            continue;
        char c;
        ssize_t r = recv(hs[i].fd, &c, 1, MSG_DONTWAIT);
        if (r < 0 && errno == EAGAIN)
            alive++;
    }
    printf("done alive=%d\n", alive);
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        fprintf(stderr, "usage: zbench server|pingpong|connrate|hold [options]\n");
        return 1;
    }
    const char *cmd = argv[1];
    argv++;
    argc--;
    if (!strcmp(cmd, "server"))
        return cmd_server(argc, argv);
    if (!strcmp(cmd, "pingpong"))
        return cmd_pingpong(argc, argv);
    if (!strcmp(cmd, "connrate"))
        return cmd_connrate(argc, argv);
    if (!strcmp(cmd, "hold"))
        return cmd_hold(argc, argv);
    fprintf(stderr, "zbench: unknown command %s\n", cmd);
    return 1;
}
