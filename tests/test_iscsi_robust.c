/* SPDX-License-Identifier: MIT */
/*
 * `hbakit serve iscsi` against a broken or hostile initiator, spoken in raw
 * iSCSI PDUs over TCP (RFC 7143): every 48-byte basic header segment is
 * built here by hand.  The test starts the target of $BUILD on the ram
 * controller (127.0.0.1, port 0, a ready file), writes known data through a
 * well-formed session, and then sends malformed input: an unknown opcode, a
 * data segment beyond MaxRecvDataSegmentLength, a huge AHS, truncated PDUs,
 * CmdSN outside the window, solicited and unsolicited Data-Out with a
 * wrong offset, DataSN or target transfer tag, header and data digest
 * mismatches, PDUs before login, logins with garbage keys, a client that
 * closes in the middle of Data-Out, a flood of idle and half-sent
 * connections (the ones over the connection limit must go at once, the
 * rest at the login timeout, 3 s here), and a fifth connection to a server started
 * with --max-connections 4.  After each, the target must have answered
 * with a Reject or a login reject or dropped the connection (never
 * executed the bad PDU), and a fresh session must still work: login, TEST
 * UNIT READY and a READ(10) of the known data.  A command, or a
 * non-immediate Task Management, NOP-Out, Text or Logout Request, that
 * arrives ahead of a CmdSN gap must wait until the gap fills and then go in
 * CmdSN order (an ABORT TASK SET covering the write that filled the gap),
 * the data such requests keep aside being bounded.  The unsolicited Data-Out of
 * writes the target ignored (a duplicate CmdSN, one outside the window, one
 * an ABORT TASK took before it came) or rejected (too many immediate
 * commands, or the ITT of a live write) must be dropped quietly, the
 * session (and the live write) going on; a write that announces
 * unsolicited Data-Out its immediate data left no room for is rejected at
 * once; an ABORT TASK or LOGICAL UNIT RESET of a write whose R2T is half
 * answered completes, and the rest of that Data-Out is dropped.  Writes and
 * reads are also checked for correctness through every data path of the
 * protocol (immediate data, unsolicited Data-Out, R2T, multi-PDU Data-In;
 * burst lengths offered in either order), with CRC32C digests, and
 * persistent reservations across two sessions; an INQUIRY whose
 * allocation length is above the expected length reports the overflow.
 * At the end the server must still run and exit 0 on SIGTERM.  Every wait
 * is bounded by a poll() timeout, so nothing can hang.
 *
 * HBK_ISCSI_PORT (and HBK_ISCSI_IQN, HBK_ISCSI_LUN) run the protocol cases
 * against a target already listening on 127.0.0.1 instead; the cases that
 * need a server of their own are then skipped.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <isa-l/crc.h>

#include "hbk/iscsi.h"
#include "tests/lib/testlib.h"

/* Opcodes (RFC 7143 section 11). */
enum {
	OP_NOP_OUT = 0x00, OP_SCSI_CMD = 0x01, OP_LOGIN = 0x03, OP_TEXT = 0x04,
	OP_DATA_OUT = 0x05, OP_LOGOUT = 0x06,
	OP_NOP_IN = 0x20, OP_SCSI_RSP = 0x21, OP_TMF_RSP = 0x22, OP_LOGIN_RSP = 0x23,
	OP_TEXT_RSP = 0x24, OP_DATA_IN = 0x25, OP_LOGOUT_RSP = 0x26, OP_R2T = 0x31,
	OP_ASYNC = 0x32, OP_REJECT = 0x3f,
};
#define BHS 48
#define IMMEDIATE 0x40
#define NO_TAG 0xffffffffu
#define BS 512u

/* Timeouts (ms): an answer, a refusal, and "nothing should come".  What
 * must not come is, in a target that got it wrong, the answer to a command
 * that went out with or before others that were answered meanwhile (or
 * an R2T or status a loopback target sends within milliseconds): 300 ms is
 * far beyond that, even under TSan on a loaded machine, and a case waits it
 * out only after the target showed it is serving. */
#define IO_MS 10000
#define REFUSE_MS 5000
#define QUIET_MS 300

/* The shared server's --login-timeout: the connection flood waits it out
 * (and fails if it takes the default 10 s); well above the second the
 * flood's at-once check takes, it still tells a connection closed at once
 * from one closed at its timeout. */
#define LOGIN_TIMEOUT_MS 3000
#define STR(x) #x
#define XSTR(x) STR(x)

/* LBA layout: the known data every health check reads; each case writes
 * its own scratch area (SCRATCH(n)) with a guard zone behind it. */
#define KNOWN_LBA 2048u
#define KNOWN_BLOCKS 64u
#define KNOWN_SEED 0x1d
#define SCRATCH(n) (8192u + (unsigned)(n) * 4096u)

static pid_t srv_pid = -1;
static unsigned short srv_port;
static bool external;
static bool unavailable;      /* no `hbakit serve iscsi` in this build: every case skips */
static char tgt_iqn[256] = "iqn.2026-11.org.hbakit:t0";
static unsigned tgt_lun;
static char tmp_dir[64];
static unsigned isid_seq;

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

static uint32_t get24(const uint8_t *p)
{
	return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

static void put24(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 16); p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)v;
}

static bool sn_gt(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) > 0;
}

static uint32_t crc32c(const void *p, size_t n)
{
	return ~crc32_iscsi((unsigned char *)(uintptr_t)p, (int)n, 0xffffffffu);
}

/* ---- the server ------------------------------------------------------- */

/* Starts `hbakit serve iscsi` with the ram driver and the extra arguments
 * (NULL-terminated); returns its pid and sets *port from the ready file. */
static pid_t server_start(const char *const *extra, unsigned short *port)
{
	static unsigned n;
	char ready[128], listen_arg[] = "127.0.0.1:0";
	snprintf(ready, sizeof(ready), "%s/ready-%u", tmp_dir, n++);
	const char *argv[32] = { tl_path("hbakit"), "serve", "iscsi", "--listen", listen_arg,
				 "--ready-file", ready, "--driver", tl_path("drivers/hbk-ram"),
				 "--driver-arg", "size=64M" };
	unsigned argc = 11;
	for (; extra && *extra && argc < 31; extra++)
		argv[argc++] = *extra;
	argv[argc] = NULL;
	pid_t parent = getpid(), pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		/* The server goes with the test, even when the test is killed. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(127);
		execv(argv[0], (char *const *)(uintptr_t)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	for (uint64_t end = now_ms() + 30000; now_ms() < end; sleep_ms(20)) {
		FILE *f = fopen(ready, "r");
		if (f) {
			char addr[64];
			unsigned p = 0;
			int got = fscanf(f, "%63s %u", addr, &p);
			fclose(f);
			if (got == 2 && p > 0 && p < 65536) {
				*port = (unsigned short)p;
				return pid;
			}
		}
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			fprintf(stderr, "hbakit serve iscsi exited (status 0x%x) before it was ready\n", st);
			return -1;
		}
	}
	fprintf(stderr, "hbakit serve iscsi not ready within 30 s\n");
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

/* True while pid runs (not exited, not a zombie). */
static bool server_alive(pid_t pid)
{
	int st;
	return pid > 0 && waitpid(pid, &st, WNOHANG) == 0;
}

/* SIGTERM, then waits up to 15 s; returns the wait status, or -1 if it had
 * to be killed. */
static int server_stop(pid_t pid)
{
	int st = 0;
	kill(pid, SIGTERM);
	for (uint64_t end = now_ms() + 15000; now_ms() < end; sleep_ms(20))
		if (waitpid(pid, &st, WNOHANG) == pid)
			return st;
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

/* ---- the wire --------------------------------------------------------- */

static int tcp_connect(unsigned short port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) && errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int err = 0;
	socklen_t el = sizeof(err);
	if (poll(&p, 1, 5000) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) || err) {
		close(fd);
		return -1;
	}
	return fd;
}

/* How long send_all may take: 5 s, but for a case that waits for the
 * target to stop reading. */
static unsigned send_limit_ms = 5000;

/* Sends all of buf within send_limit_ms; -1 when the peer is gone or stalls. */
static int send_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint64_t end = now_ms() + send_limit_ms;
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return -1;
		struct pollfd pf = { .fd = fd, .events = POLLOUT };
		int left = (int)(end - now_ms());
		if (left <= 0 || poll(&pf, 1, left) <= 0 || (pf.revents & (POLLERR | POLLHUP)))
			return -1;
	}
	return 0;
}

enum { R_PDU = 1, R_CLOSED = 0, R_TIMEOUT = -1, R_BAD = -2 };

/* Reads exactly len bytes by the deadline: R_PDU, R_CLOSED (EOF or reset)
 * or R_TIMEOUT. */
static int recv_exact(int fd, void *buf, size_t len, uint64_t deadline)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t n = recv(fd, p, len, MSG_DONTWAIT);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			return R_CLOSED;
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		int64_t left = (int64_t)(deadline - now_ms());
		if (left <= 0)
			return R_TIMEOUT;
		int r = poll(&pf, 1, (int)left);
		if (r == 0)
			return R_TIMEOUT;
	}
	return R_PDU;
}

/* ---- sessions --------------------------------------------------------- */

struct sess {
	int fd;
	unsigned short port;
	uint32_t cmdsn, expstatsn, itt, maxcmdsn;
	uint32_t send_mrdsl;          /* the target's MaxRecvDataSegmentLength */
	uint32_t recv_mrdsl;          /* ours */
	uint32_t first_burst, max_burst;
	bool initial_r2t, immediate_data, hdigest, ddigest;
	char keys[8192];              /* what the target said during login */
	size_t keys_len;
	unsigned digest_errors;       /* bad digests from the target */
	/* What the last write or read did on the wire. */
	unsigned imm_bytes, unsol_pdus, r2ts, datain_pdus, solicited_pdus;
};

struct pdu {
	uint8_t h[BHS];
	uint8_t *data;
	uint32_t dlen;
};

static char proto_err[256];   /* the last protocol violation by the target */

static void pdu_free(struct pdu *p)
{
	free(p->data);
	p->data = NULL;
}

enum { SEND_BAD_HDIGEST = 1, SEND_BAD_DDIGEST = 2 };

/* Sends header h (data segment length set here) and data, with the
 * digests the session negotiated; flags corrupt one of them. */
static int send_pdu(struct sess *s, uint8_t *h, const void *data, uint32_t dlen, unsigned flags)
{
	size_t pad = (4 - dlen % 4) % 4;
	size_t n = BHS + (s->hdigest ? 4 : 0) + dlen + pad + (s->ddigest && dlen ? 4 : 0);
	uint8_t *b = calloc(1, n), *p = b;
	assert_non_null(b);
	put24(h + 5, dlen);
	memcpy(p, h, BHS);
	p += BHS;
	if (s->hdigest) {
		uint32_t c = crc32c(h, BHS) ^ (flags & SEND_BAD_HDIGEST ? 0x10203040u : 0);
		memcpy(p, &c, 4);   /* little-endian on the wire, as initiators send it */
		p += 4;
	}
	if (dlen) {
		memcpy(p, data, dlen);
		p += dlen + pad;
		if (s->ddigest) {
			uint32_t c = crc32c(b + BHS + (s->hdigest ? 4 : 0), dlen + pad) ^
				     (flags & SEND_BAD_DDIGEST ? 0x01020304u : 0);
			memcpy(p, &c, 4);
		}
	}
	int rc = send_all(s->fd, b, n);
	free(b);
	return rc;
}

/* Bookkeeping of sequence numbers carried by a target PDU. */
static void track(struct sess *s, const uint8_t *h)
{
	unsigned op = h[0] & 0x3f;
	uint32_t statsn = get32(h + 24);
	bool has_status = op == OP_SCSI_RSP || op == OP_LOGIN_RSP || op == OP_LOGOUT_RSP ||
			  op == OP_TEXT_RSP || op == OP_TMF_RSP || op == OP_REJECT || op == OP_ASYNC ||
			  (op == OP_DATA_IN && (h[1] & 0x01)) ||
			  (op == OP_NOP_IN && get32(h + 16) != NO_TAG);
	if (has_status && !sn_gt(s->expstatsn, statsn + 1))
		s->expstatsn = statsn + 1;
	if (op != OP_LOGIN_RSP && sn_gt(get32(h + 32), s->maxcmdsn))
		s->maxcmdsn = get32(h + 32);
}

/* One PDU from the target, its digests checked: R_PDU, R_CLOSED, R_TIMEOUT
 * or R_BAD (a digest error or an absurd length, described in proto_err). */
static int recv_pdu_raw(struct sess *s, struct pdu *p, uint64_t deadline)
{
	memset(p, 0, sizeof(*p));
	int rc = recv_exact(s->fd, p->h, BHS, deadline);
	if (rc != R_PDU)
		return rc;
	size_t ahs = (size_t)p->h[4] * 4;
	uint8_t skip[1024];
	if (ahs && (rc = recv_exact(s->fd, skip, ahs, deadline)) != R_PDU)
		return rc;
	if (s->hdigest) {
		uint32_t c;
		if ((rc = recv_exact(s->fd, &c, 4, deadline)) != R_PDU)
			return rc;
		if (c != crc32c(p->h, BHS) && !ahs) {
			s->digest_errors++;
			snprintf(proto_err, sizeof(proto_err), "header digest of opcode 0x%02x is wrong",
				 p->h[0] & 0x3f);
			return R_BAD;
		}
	}
	p->dlen = get24(p->h + 5);
	if (p->dlen > (16u << 20)) {
		snprintf(proto_err, sizeof(proto_err), "data segment of %u bytes", p->dlen);
		return R_BAD;
	}
	if (p->dlen) {
		size_t padded = (p->dlen + 3) & ~3u;
		p->data = calloc(1, padded + 1);
		assert_non_null(p->data);
		if ((rc = recv_exact(s->fd, p->data, padded, deadline)) != R_PDU) {
			pdu_free(p);
			return rc;
		}
		if (s->ddigest) {
			uint32_t c;
			if ((rc = recv_exact(s->fd, &c, 4, deadline)) != R_PDU) {
				pdu_free(p);
				return rc;
			}
			if (c != crc32c(p->data, padded)) {
				s->digest_errors++;
				snprintf(proto_err, sizeof(proto_err), "data digest of opcode 0x%02x is wrong",
					 p->h[0] & 0x3f);
				pdu_free(p);
				return R_BAD;
			}
		}
	}
	track(s, p->h);
	return R_PDU;
}

static void nop_out_reply(struct sess *s, const uint8_t *nop_in)
{
	uint8_t h[BHS] = { IMMEDIATE | OP_NOP_OUT, 0x80 };
	memcpy(h + 8, nop_in + 8, 8);
	put32(h + 16, NO_TAG);
	memcpy(h + 20, nop_in + 20, 4);
	put32(h + 24, s->cmdsn);
	put32(h + 28, s->expstatsn);
	send_pdu(s, h, NULL, 0, 0);
}

/* The next PDU that is not housekeeping: the target's pings (NOP-In with a
 * transfer tag) are answered, asynchronous messages dropped. */
static int recv_pdu(struct sess *s, struct pdu *p, unsigned ms)
{
	uint64_t deadline = now_ms() + ms;
	for (;;) {
		int rc = recv_pdu_raw(s, p, deadline);
		if (rc != R_PDU)
			return rc;
		unsigned op = p->h[0] & 0x3f;
		if (op == OP_NOP_IN && get32(p->h + 16) == NO_TAG) {
			if (get32(p->h + 20) != NO_TAG)
				nop_out_reply(s, p->h);
			pdu_free(p);
			continue;
		}
		if (op == OP_ASYNC) {
			pdu_free(p);
			continue;
		}
		return R_PDU;
	}
}

static void sess_close(struct sess *s)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}

/* Value of key k in the target's login text, or NULL. */
static const char *key_get(const struct sess *s, const char *k)
{
	size_t kl = strlen(k);
	for (size_t i = 0; i < s->keys_len;) {
		const char *e = s->keys + i;
		size_t el = strnlen(e, s->keys_len - i);
		if (el > kl && !strncmp(e, k, kl) && e[kl] == '=')
			return e + kl + 1;
		i += el + 1;
	}
	return NULL;
}

struct login_opts {
	const char *initiator;          /* default iqn.2026-11.org.hbakit.test:robust */
	const char *target;             /* default tgt_iqn */
	const char *const *keys;        /* operational keys replacing the defaults */
	const void *raw;                /* replaces the first request's text */
	size_t raw_len;
	uint8_t version_min;
	unsigned short port;            /* default srv_port */
};

/* Appends "k=v\0" unless a key of that name is in over[]. */
static size_t add_key(char *b, size_t n, size_t cap, const char *kv, const char *const *over)
{
	size_t kl = strcspn(kv, "=");
	for (; over && *over; over++)
		if (!strncmp(*over, kv, kl) && (*over)[kl] == '=')
			return n;
	size_t l = strlen(kv) + 1;
	if (n + l <= cap) {
		memcpy(b + n, kv, l);
		n += l;
	}
	return n;
}

/* One Login Request (CSG csg, NSG nsg, transit) and its response: returns
 * R_PDU with the response in *rsp, or R_CLOSED/R_TIMEOUT/R_BAD. */
static int login_step(struct sess *s, const uint8_t isid[6], int csg, int nsg, bool transit,
		      const void *text, size_t len, uint8_t vmin, struct pdu *rsp)
{
	uint8_t h[BHS] = { IMMEDIATE | OP_LOGIN };
	h[1] = (uint8_t)((transit ? 0x80 : 0) | csg << 2 | (transit ? nsg : 0));
	h[2] = 0;          /* Version-max */
	h[3] = vmin;       /* Version-min */
	memcpy(h + 8, isid, 6);
	put32(h + 16, s->itt++);
	put32(h + 24, s->cmdsn);
	put32(h + 28, s->expstatsn);
	if (send_pdu(s, h, text, (uint32_t)len, 0))
		return R_CLOSED;
	int rc = recv_pdu(s, rsp, IO_MS);
	if (rc == R_PDU) {
		if ((rsp->h[0] & 0x3f) == OP_LOGIN_RSP && rsp->dlen &&
		    s->keys_len + rsp->dlen < sizeof(s->keys)) {
			memcpy(s->keys + s->keys_len, rsp->data, rsp->dlen);
			s->keys_len += rsp->dlen;
			if (s->keys[s->keys_len - 1])
				s->keys[s->keys_len++] = 0;
		}
		if ((rsp->h[0] & 0x3f) == OP_LOGIN_RSP)
			s->expstatsn = get32(rsp->h + 24) + 1;
	}
	return rc;
}

enum { LOGIN_CLOSED = -1, LOGIN_TIMEOUT = -2, LOGIN_PROTO = -3 };

/* Connects and logs in (security stage with AuthMethod=None, then the
 * operational stage) to full feature phase.  Returns 0, a login reject's
 * status (class << 8 | detail, > 0), or LOGIN_CLOSED/TIMEOUT/PROTO. */
static int login(struct sess *s, const struct login_opts *o)
{
	static const struct login_opts none;
	if (!o)
		o = &none;
	memset(s, 0, sizeof(*s));
	s->port = o->port ? o->port : srv_port;
	s->fd = tcp_connect(s->port);
	if (s->fd < 0)
		return LOGIN_CLOSED;
	s->cmdsn = 1;
	s->itt = 0x1000;
	s->recv_mrdsl = 65536;
	uint8_t isid[6] = { 0x80, 0x48, 0x42, 0x4b, (uint8_t)(isid_seq >> 8), (uint8_t)isid_seq };
	isid_seq++;

	char text[4096];
	size_t n = 0;
	char kv[512];
	snprintf(kv, sizeof(kv), "InitiatorName=%s",
		 o->initiator ? o->initiator : "iqn.2026-11.org.hbakit.test:robust");
	n = add_key(text, n, sizeof(text), kv, NULL);
	n = add_key(text, n, sizeof(text), "SessionType=Normal", NULL);
	snprintf(kv, sizeof(kv), "TargetName=%s", o->target ? o->target : tgt_iqn);
	n = add_key(text, n, sizeof(text), kv, NULL);
	n = add_key(text, n, sizeof(text), "AuthMethod=None", NULL);
	const void *t1 = o->raw ? o->raw : text;
	size_t l1 = o->raw ? o->raw_len : n;

	struct pdu r;
	int rc = login_step(s, isid, 0, 1, true, t1, l1, o->version_min, &r);
	for (int round = 0;; round++) {
		if (rc == R_CLOSED)
			return LOGIN_CLOSED;
		if (rc != R_PDU)
			return rc == R_TIMEOUT ? LOGIN_TIMEOUT : LOGIN_PROTO;
		if ((r.h[0] & 0x3f) != OP_LOGIN_RSP) {
			snprintf(proto_err, sizeof(proto_err), "opcode 0x%02x during login", r.h[0] & 0x3f);
			pdu_free(&r);
			return LOGIN_PROTO;
		}
		int status = r.h[36] << 8 | r.h[37];
		bool transit = r.h[1] & 0x80;
		int nsg = r.h[1] & 3;
		pdu_free(&r);
		if (status)
			return status;
		if (transit && nsg == 1)
			break;
		if (transit && nsg == 3)
			goto ffp;
		if (round == 3)
			return LOGIN_PROTO;
		rc = login_step(s, isid, 0, 1, true, NULL, 0, o->version_min, &r);
	}

	n = 0;
	const char *defaults[] = {
		"HeaderDigest=None", "DataDigest=None", "MaxRecvDataSegmentLength=65536",
		"InitialR2T=No", "ImmediateData=Yes", "FirstBurstLength=65536",
		"MaxBurstLength=262144", "ErrorRecoveryLevel=0", "MaxConnections=1",
		"DefaultTime2Wait=0", "DefaultTime2Retain=0", "MaxOutstandingR2T=1",
		"DataPDUInOrder=Yes", "DataSequenceInOrder=Yes", "IFMarker=No", "OFMarker=No",
	};
	for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
		n = add_key(text, n, sizeof(text), defaults[i], o->keys);
	for (const char *const *k = o->keys; k && *k; k++) {
		n = add_key(text, n, sizeof(text), *k, NULL);
		if (!strncmp(*k, "MaxRecvDataSegmentLength=", 25))
			s->recv_mrdsl = (uint32_t)strtoul(*k + 25, NULL, 10);
	}
	rc = login_step(s, isid, 1, 3, true, text, n, o->version_min, &r);
	for (int round = 0;; round++) {
		if (rc == R_CLOSED)
			return LOGIN_CLOSED;
		if (rc != R_PDU)
			return rc == R_TIMEOUT ? LOGIN_TIMEOUT : LOGIN_PROTO;
		if ((r.h[0] & 0x3f) != OP_LOGIN_RSP) {
			snprintf(proto_err, sizeof(proto_err), "opcode 0x%02x during login", r.h[0] & 0x3f);
			pdu_free(&r);
			return LOGIN_PROTO;
		}
		int status = r.h[36] << 8 | r.h[37];
		bool transit = r.h[1] & 0x80;
		int nsg = r.h[1] & 3;
		if (!status && transit && nsg == 3) {
			s->maxcmdsn = get32(r.h + 32);
			pdu_free(&r);
			break;
		}
		pdu_free(&r);
		if (status)
			return status;
		if (round == 3)
			return LOGIN_PROTO;
		rc = login_step(s, isid, 1, 3, true, NULL, 0, o->version_min, &r);
	}
ffp:;
	const char *v;
	s->send_mrdsl = (v = key_get(s, "MaxRecvDataSegmentLength")) ? (uint32_t)atoi(v) : 8192;
	s->first_burst = (v = key_get(s, "FirstBurstLength")) ? (uint32_t)atoi(v) : 65536;
	s->max_burst = (v = key_get(s, "MaxBurstLength")) ? (uint32_t)atoi(v) : 262144;
	s->initial_r2t = (v = key_get(s, "InitialR2T")) ? !strcmp(v, "Yes") : true;
	s->immediate_data = (v = key_get(s, "ImmediateData")) ? !strcmp(v, "Yes") : true;
	s->hdigest = (v = key_get(s, "HeaderDigest")) && !strcmp(v, "CRC32C");
	s->ddigest = (v = key_get(s, "DataDigest")) && !strcmp(v, "CRC32C");
	if (!s->send_mrdsl || s->send_mrdsl > (16u << 20)) {
		snprintf(proto_err, sizeof(proto_err), "MaxRecvDataSegmentLength=%u", s->send_mrdsl);
		return LOGIN_PROTO;
	}
	return 0;
}

/* Logs in with opts and fails the test unless that works. */
static void login_ok(struct sess *s, const struct login_opts *o)
{
	int rc = login(s, o);
	if (rc)
		fail_msg("login failed: %d (0x%04x) %s", rc, rc > 0 ? rc : 0, proto_err);
}

static void lun_bytes(uint8_t *h)
{
	if (tgt_lun < 256) {
		h[9] = (uint8_t)tgt_lun;
	} else {
		h[8] = (uint8_t)(0x40 | tgt_lun >> 8);
		h[9] = (uint8_t)tgt_lun;
	}
}

enum { ABORT_TASK = 1, ABORT_TASK_SET = 2 };   /* task management functions */

/* Sends a Task Management Function Request on LUN 0: function (ABORT_TASK,
 * ABORT_TASK_SET, ...), immediate or not, with its ITT, the Referenced Task
 * Tag, its CmdSN and RefCmdSN. */
static void send_tmf(struct sess *s, unsigned function, bool imm, uint32_t itt, uint32_t ref_itt,
		     uint32_t cmdsn, uint32_t ref_cmdsn)
{
	uint8_t tm[BHS] = { (uint8_t)(0x02 | (imm ? IMMEDIATE : 0)), (uint8_t)(0x80 | function) };
	lun_bytes(tm);
	put32(tm + 16, itt);
	put32(tm + 20, ref_itt);
	put32(tm + 24, cmdsn);
	put32(tm + 28, s->expstatsn);
	put32(tm + 32, ref_cmdsn);
	assert_int_equal(send_pdu(s, tm, NULL, 0, 0), 0);
}

/* ---- SCSI commands ------------------------------------------------------ */

enum outcome { OUT_RESPONSE, OUT_REJECT, OUT_CLOSED, OUT_TIMEOUT, OUT_PROTO };
static const char *const outcome_name[] = { "a SCSI response", "a Reject", "a closed connection",
					   "a timeout", "a protocol violation" };

struct result {
	enum outcome out;
	int status;                     /* SCSI status of OUT_RESPONSE */
	uint8_t response, sense_key, asc, ascq, reject_reason;
	uint8_t flags;                  /* of the PDU with the status: O (0x04), U (0x02) */
	uint32_t residual;
};

/* How the first Data-Out answering an R2T (F_UNSOL_*: the first
 * unsolicited one) is spoilt. */
enum fault {
	F_NONE, F_TTT, F_OFFSET, F_DATASN, F_CLOSE_HALF, F_CLOSE_MIDPDU, F_DDIGEST,
	/* the first unsolicited Data-Out instead */
	F_UNSOL_TTT, F_UNSOL_OFFSET, F_UNSOL_DATASN,
};

static void cmd_header(struct sess *s, uint8_t *h, const uint8_t *cdb, unsigned cdb_len,
		       bool write, uint32_t len, uint32_t itt)
{
	memset(h, 0, BHS);
	h[0] = OP_SCSI_CMD;
	h[1] = (uint8_t)(0x80 | (len ? (write ? 0x20 : 0x40) : 0) | 1);  /* F, R/W, simple */
	lun_bytes(h);
	put32(h + 16, itt);
	put32(h + 20, len);
	put32(h + 24, s->cmdsn);
	put32(h + 28, s->expstatsn);
	memcpy(h + 32, cdb, cdb_len);
}

static void fill_response(struct result *r, const struct pdu *p)
{
	r->out = OUT_RESPONSE;
	r->response = p->h[2];
	r->status = p->h[3];
	r->flags = p->h[1];
	r->residual = get32(p->h + 44);
	if (r->status == 2 && p->dlen >= 2 + 14) {
		const uint8_t *sense = p->data + 2;
		if ((sense[0] & 0x7f) >= 0x72) {
			r->sense_key = sense[1] & 0xf;
			r->asc = sense[2];
			r->ascq = sense[3];
		} else {
			r->sense_key = sense[2] & 0xf;
			r->asc = sense[12];
			r->ascq = sense[13];
		}
	}
}

static int send_dataout(struct sess *s, uint32_t itt, uint32_t ttt, uint32_t datasn, uint32_t off,
			const uint8_t *data, uint32_t n, bool final, unsigned flags)
{
	uint8_t h[BHS] = { OP_DATA_OUT, final ? 0x80 : 0 };
	lun_bytes(h);
	put32(h + 16, itt);
	put32(h + 20, ttt);
	put32(h + 28, s->expstatsn);
	put32(h + 36, datasn);
	put32(h + 40, off);
	return send_pdu(s, h, data, n, flags);
}

/* Sends data[off, off + len) as a sequence of Data-Out PDUs of at most the
 * target's MaxRecvDataSegmentLength; the first PDU carries the fault. */
static int send_sequence(struct sess *s, uint32_t itt, uint32_t ttt, const uint8_t *buf,
			 uint32_t total, uint32_t off, uint32_t len, enum fault fault, bool *closed)
{
	uint32_t sn = 0;
	if (fault == F_CLOSE_HALF) {
		/* A quarter of the sequence at a time, and gone after the half. */
		for (uint32_t done = 0; done < len / 2; sn++) {
			uint32_t n = len / 4 < s->send_mrdsl ? len / 4 : s->send_mrdsl;
			if (!n || send_dataout(s, itt, ttt, sn, off + done, buf + off + done, n, false, 0))
				break;
			done += n;
		}
		sess_close(s);
		*closed = true;
		return 0;
	}
	for (uint32_t done = 0; done < len; sn++) {
		uint32_t n = len - done < s->send_mrdsl ? len - done : s->send_mrdsl;
		bool final = done + n == len;
		uint32_t t = ttt, dsn = sn, o = off + done;
		unsigned flags = 0;
		if (sn == 0) {
			switch (fault) {
			case F_TTT: t = ttt ^ 0x5a5a0000u; break;
			case F_OFFSET: o = total + 65536; break;
			case F_DATASN: dsn = 7; break;
			case F_DDIGEST: flags = SEND_BAD_DDIGEST; break;
			case F_CLOSE_MIDPDU: {
				uint8_t h[BHS] = { OP_DATA_OUT, 0x80 };
				lun_bytes(h);
				put32(h + 16, itt);
				put32(h + 20, ttt);
				put24(h + 5, n);
				put32(h + 40, o);
				send_all(s->fd, h, BHS);
				send_all(s->fd, buf + o, n / 2);
				sess_close(s);
				*closed = true;
				return 0;
			}
			default: break;
			}
		}
		if (send_dataout(s, itt, t, dsn, o, buf + off + done, n, final, flags))
			return -1;
		s->solicited_pdus += ttt != NO_TAG;
		done += n;
	}
	return 0;
}

/*
 * One SCSI command with a data-in or data-out buffer of len bytes (or
 * none), following what the session negotiated: immediate data up to
 * FirstBurstLength, unsolicited Data-Out when InitialR2T=No, and Data-Out
 * sequences for every R2T.  Data-In must arrive in order with consecutive
 * DataSN and segments no longer than our MaxRecvDataSegmentLength; anything
 * else is OUT_PROTO with proto_err saying what.  fault spoils the first
 * Data-Out answering an R2T (or the immediate data, for F_DDIGEST).
 */
static void scsi_cmd(struct sess *s, const uint8_t *cdb, unsigned cdb_len, bool write, void *buf,
		     uint32_t len, enum fault fault, struct result *r)
{
	memset(r, 0, sizeof(*r));
	r->status = -1;
	if (write)
		s->imm_bytes = s->unsol_pdus = s->r2ts = s->solicited_pdus = 0;
	else
		s->datain_pdus = 0;
	uint8_t h[BHS];
	uint32_t itt = s->itt++;
	cmd_header(s, h, cdb, cdb_len, write, len, itt);
	uint32_t imm = 0, unsol_end = 0;
	if (write && len) {
		uint32_t fb = len < s->first_burst ? len : s->first_burst;
		if (s->immediate_data)
			imm = fb < s->send_mrdsl ? fb : s->send_mrdsl;
		unsol_end = s->initial_r2t ? imm : fb;
		if (unsol_end > imm)
			h[1] &= (uint8_t)~0x80;   /* unsolicited Data-Out follows */
	}
	unsigned flags = fault == F_DDIGEST && imm ? SEND_BAD_DDIGEST : 0;
	s->cmdsn++;
	if (send_pdu(s, h, buf, imm, flags)) {
		r->out = OUT_CLOSED;
		return;
	}
	if (write)
		s->imm_bytes = imm;
	uint8_t *b = buf;
	if (unsol_end > imm) {
		uint32_t sn = 0;
		for (uint32_t off = imm; off < unsol_end; sn++) {
			uint32_t n = unsol_end - off < s->send_mrdsl ? unsol_end - off : s->send_mrdsl;
			uint32_t ttt = NO_TAG, dsn = sn, o = off;
			if (sn == 0 && fault == F_UNSOL_TTT)
				ttt = 0x12345678;
			if (sn == 0 && fault == F_UNSOL_OFFSET)
				o = off + 4096;
			if (sn == 0 && fault == F_UNSOL_DATASN)
				dsn = 27;
			if (send_dataout(s, itt, ttt, dsn, o, b + off, n, off + n == unsol_end, 0)) {
				r->out = OUT_CLOSED;
				return;
			}
			s->unsol_pdus++;
			off += n;
		}
	}
	uint32_t in_off = 0, in_sn = 0, r2tsn = 0;
	bool fault_used = flags != 0;
	for (;;) {
		struct pdu p;
		int rc = recv_pdu(s, &p, IO_MS);
		if (rc != R_PDU) {
			r->out = rc == R_CLOSED ? OUT_CLOSED : rc == R_TIMEOUT ? OUT_TIMEOUT : OUT_PROTO;
			return;
		}
		unsigned op = p.h[0] & 0x3f;
		if (op == OP_REJECT) {
			r->out = OUT_REJECT;
			r->reject_reason = p.h[2];
			pdu_free(&p);
			return;
		}
		if (get32(p.h + 16) != itt) {
			snprintf(proto_err, sizeof(proto_err), "opcode 0x%02x for task 0x%x, expected 0x%x",
				 op, get32(p.h + 16), itt);
			pdu_free(&p);
			r->out = OUT_PROTO;
			return;
		}
		if (op == OP_SCSI_RSP) {
			fill_response(r, &p);
			pdu_free(&p);
			if (!write && r->status == 0 && in_off != len - (p.h[1] & 0x02 ? r->residual : 0)) {
				snprintf(proto_err, sizeof(proto_err), "read of %u bytes returned %u (residual %u)",
					 len, in_off, r->residual);
				r->out = OUT_PROTO;
			}
			return;
		}
		if (op == OP_DATA_IN && !write) {
			uint32_t off = get32(p.h + 40), sn = get32(p.h + 36);
			if (off != in_off || sn != in_sn || p.dlen > s->recv_mrdsl || off + p.dlen > len) {
				snprintf(proto_err, sizeof(proto_err),
					 "Data-In offset %u DataSN %u length %u; expected offset %u DataSN %u, "
					 "at most %u bytes of %u", off, sn, p.dlen, in_off, in_sn, s->recv_mrdsl, len);
				pdu_free(&p);
				r->out = OUT_PROTO;
				return;
			}
			memcpy(b + off, p.data, p.dlen);
			in_off += p.dlen;
			in_sn++;
			s->datain_pdus++;
			if (p.h[1] & 0x01) {         /* status in the last Data-In */
				r->out = OUT_RESPONSE;
				r->status = p.h[3];
				r->flags = p.h[1];
				r->residual = get32(p.h + 44);
				pdu_free(&p);
				if (r->status == 0 && in_off != len - (p.h[1] & 0x02 ? r->residual : 0)) {
					snprintf(proto_err, sizeof(proto_err),
						 "read of %u bytes returned %u (residual %u)", len, in_off, r->residual);
					r->out = OUT_PROTO;
				}
				return;
			}
			pdu_free(&p);
			continue;
		}
		if (op == OP_R2T && write) {
			uint32_t ttt = get32(p.h + 20), off = get32(p.h + 40), n = get32(p.h + 44);
			uint32_t sn = get32(p.h + 36);
			pdu_free(&p);
			if (sn != r2tsn || off + n > len || n == 0 || n > s->max_burst || off < unsol_end) {
				snprintf(proto_err, sizeof(proto_err),
					 "R2T R2TSN %u offset %u length %u (expected R2TSN %u, within [%u, %u), "
					 "at most %u)", sn, off, n, r2tsn, unsol_end, len, s->max_burst);
				r->out = OUT_PROTO;
				return;
			}
			r2tsn++;
			s->r2ts++;
			bool closed = false;
			enum fault f = fault_used ? F_NONE : fault;
			fault_used = true;
			if (send_sequence(s, itt, ttt, b, len, off, n, f, &closed)) {
				r->out = OUT_CLOSED;
				return;
			}
			if (closed) {
				r->out = OUT_CLOSED;
				return;
			}
			continue;
		}
		snprintf(proto_err, sizeof(proto_err), "unexpected opcode 0x%02x during a %s", op,
			 write ? "write" : "read");
		pdu_free(&p);
		r->out = OUT_PROTO;
		return;
	}
}

static void rw10(struct sess *s, bool write, uint32_t lba, uint16_t blocks, void *buf,
		 enum fault fault, struct result *r)
{
	uint8_t cdb[10] = { write ? 0x2a : 0x28, 0, (uint8_t)(lba >> 24), (uint8_t)(lba >> 16),
			    (uint8_t)(lba >> 8), (uint8_t)lba, 0, (uint8_t)(blocks >> 8), (uint8_t)blocks, 0 };
	scsi_cmd(s, cdb, sizeof(cdb), write, buf, (uint32_t)blocks * BS, fault, r);
}

static void expect_good(const struct result *r, const char *what)
{
	if (r->out != OUT_RESPONSE || r->status != 0)
		fail_msg("%s: %s, status %d sense %x/%02x/%02x, reject reason 0x%02x %s", what,
			 outcome_name[r->out], r->status, r->sense_key, r->asc, r->ascq, r->reject_reason,
			 r->out == OUT_PROTO ? proto_err : "");
}

/* A command the target must carry out: retried on UNIT ATTENTION, which a
 * new session may see first. */
static void rw_ok(struct sess *s, bool write, uint32_t lba, uint16_t blocks, void *buf)
{
	struct result r;
	for (int i = 0; i < 4; i++) {
		rw10(s, write, lba, blocks, buf, F_NONE, &r);
		if (!(r.out == OUT_RESPONSE && r.status == 2 && r.sense_key == 6))
			break;
	}
	expect_good(&r, write ? "WRITE(10)" : "READ(10)");
}

static void tur_ok(struct sess *s)
{
	static const uint8_t cdb[6];
	struct result r;
	for (int i = 0; i < 4; i++) {
		scsi_cmd(s, cdb, 6, false, NULL, 0, F_NONE, &r);
		if (!(r.out == OUT_RESPONSE && r.status == 2 && r.sense_key == 6))
			break;
	}
	expect_good(&r, "TEST UNIT READY");
}

static void logout(struct sess *s)
{
	uint8_t h[BHS] = { IMMEDIATE | OP_LOGOUT, 0x80 };
	put32(h + 16, s->itt++);
	put32(h + 24, s->cmdsn);
	put32(h + 28, s->expstatsn);
	assert_int_equal(send_pdu(s, h, NULL, 0, 0), 0);
	struct pdu p;
	int rc = recv_pdu(s, &p, IO_MS);
	if (rc != R_PDU)
		fail_msg("no Logout Response (%d)", rc);
	assert_int_equal(p.h[0] & 0x3f, OP_LOGOUT_RSP);
	assert_int_equal(p.h[2], 0);
	pdu_free(&p);
	sess_close(s);
}

/* Writes the pattern of (lba, seed) and reads it back through s. */
static void write_verify(struct sess *s, uint32_t lba, uint16_t blocks, uint32_t seed)
{
	uint8_t *w = malloc((size_t)blocks * BS), *rd = malloc((size_t)blocks * BS);
	assert_non_null(w);
	assert_non_null(rd);
	tl_fill(w, lba, blocks, BS, seed);
	rw_ok(s, true, lba, blocks, w);
	memset(rd, 0xee, (size_t)blocks * BS);
	rw_ok(s, false, lba, blocks, rd);
	if (!tl_check(rd, lba, blocks, BS, seed))
		fail_msg("read back of %u blocks at LBA %u differs from what was written", blocks, lba);
	free(w);
	free(rd);
}

/* True if blocks at lba hold the pattern (lba, seed), read through s. */
static bool holds(struct sess *s, uint32_t lba, uint16_t blocks, uint32_t seed)
{
	uint8_t *rd = malloc((size_t)blocks * BS);
	assert_non_null(rd);
	rw_ok(s, false, lba, blocks, rd);
	bool ok = tl_check(rd, lba, blocks, BS, seed);
	free(rd);
	return ok;
}

/* A fresh well-formed session on port still works: login (retried for 5 s
 * while the target cleans up), TEST UNIT READY, READ(10) of the known
 * data, logout. */
static void healthy_at(unsigned short port)
{
	struct sess s;
	struct login_opts o = { .port = port };
	int rc = LOGIN_CLOSED;
	for (uint64_t end = now_ms() + 5000; now_ms() < end; sleep_ms(100)) {
		if (!(rc = login(&s, &o)))
			break;
		sess_close(&s);
	}
	if (rc)
		fail_msg("a fresh session cannot log in: %d %s", rc, proto_err);
	tur_ok(&s);
	if (!holds(&s, KNOWN_LBA, KNOWN_BLOCKS, KNOWN_SEED))
		fail_msg("the known data has changed");
	logout(&s);
	if (!external)
		assert_true(server_alive(srv_pid));
}

static void healthy(void)
{
	healthy_at(srv_port);
}

/* The target's answer to something it must refuse: a Reject PDU, a Login
 * reject, or a closed connection, within REFUSE_MS.  Returns a description
 * for the log; fails the test on anything else. */
static const char *expect_refusal(struct sess *s, const char *what)
{
	static char desc[128];
	struct pdu p;
	int rc = recv_pdu(s, &p, REFUSE_MS);
	if (rc == R_CLOSED) {
		snprintf(desc, sizeof(desc), "connection dropped");
	} else if (rc == R_PDU && (p.h[0] & 0x3f) == OP_REJECT) {
		snprintf(desc, sizeof(desc), "Reject, reason 0x%02x", p.h[2]);
		pdu_free(&p);
	} else if (rc == R_PDU && (p.h[0] & 0x3f) == OP_LOGIN_RSP && p.h[36]) {
		snprintf(desc, sizeof(desc), "Login reject 0x%02x%02x", p.h[36], p.h[37]);
		pdu_free(&p);
	} else if (rc == R_PDU) {
		unsigned op = p.h[0] & 0x3f;
		pdu_free(&p);
		fail_msg("%s: the target answered with opcode 0x%02x (status 0x%02x) instead of refusing",
			 what, op, p.h[3]);
	} else {
		fail_msg("%s: neither a Reject nor a dropped connection within %d ms (%s)", what,
			 REFUSE_MS, rc == R_TIMEOUT ? "timeout" : proto_err);
	}
	printf("# %s: %s\n", what, desc);
	return desc;
}

/* Before a login completes, the shared server closes a connection after
 * LOGIN_TIMEOUT_MS whatever it was sent, so a refusal there (a Reject, a
 * Login reject or a drop) counts only if it came well before that: a
 * target that ignored the PDU would otherwise pass.  t0 is when the PDU
 * went out. */
static void refused_before_login_timeout(uint64_t t0, const char *what)
{
	uint64_t took = now_ms() - t0;
	if (took >= LOGIN_TIMEOUT_MS * 2 / 3)
		fail_msg("%s: refused only after %llu ms, near the %d ms login timeout: ignored, "
			 "not refused", what, (unsigned long long)took, LOGIN_TIMEOUT_MS);
}

/* ---- setup ------------------------------------------------------------ */

static int group_setup(void **state)
{
	(void)state;
	signal(SIGPIPE, SIG_IGN);
	const char *port = getenv("HBK_ISCSI_PORT");
	if (port && *port) {
		external = true;
		srv_port = (unsigned short)atoi(port);
		if (getenv("HBK_ISCSI_IQN"))
			snprintf(tgt_iqn, sizeof(tgt_iqn), "%s", getenv("HBK_ISCSI_IQN"));
		if (getenv("HBK_ISCSI_LUN"))
			tgt_lun = (unsigned)atoi(getenv("HBK_ISCSI_LUN"));
	} else {
		char cmd[600];
		snprintf(cmd, sizeof(cmd), "timeout 10 %s serve iscsi --help 2>&1 | grep -q -- --ready-file", tl_path("hbakit"));
		if (access(tl_path("hbakit"), X_OK) || system(cmd)) {
			printf("# %s has no 'serve iscsi': every case skips\n", tl_path("hbakit"));
			unavailable = true;
			return 0;
		}
		snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/hbk-iscsi-robust.XXXXXX");
		if (!mkdtemp(tmp_dir))
			return -1;
		const char *args[] = { "--login-timeout", XSTR(LOGIN_TIMEOUT_MS), NULL };
		srv_pid = server_start(args, &srv_port);
		if (srv_pid < 0)
			return -1;
	}
	struct sess s;
	if (login(&s, NULL)) {
		fprintf(stderr, "setup: cannot log in (%s)\n", proto_err);
		return -1;
	}
	uint8_t *b = malloc(KNOWN_BLOCKS * BS);
	tl_fill(b, KNOWN_LBA, KNOWN_BLOCKS, BS, KNOWN_SEED);
	struct result r;
	for (int i = 0; i < 4; i++) {
		rw10(&s, true, KNOWN_LBA, KNOWN_BLOCKS, b, F_NONE, &r);
		if (!(r.out == OUT_RESPONSE && r.status == 2 && r.sense_key == 6))
			break;
	}
	free(b);
	sess_close(&s);
	if (r.out != OUT_RESPONSE || r.status) {
		fprintf(stderr, "setup: writing the known data failed (%s, status %d)\n",
			outcome_name[r.out], r.status);
		return -1;
	}
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	if (srv_pid > 0 && server_alive(srv_pid))
		server_stop(srv_pid);
	if (tmp_dir[0]) {
		char cmd[128];
		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp_dir);
		if (system(cmd)) {
			/* nothing to do: a leftover directory in /tmp */
		}
	}
	return 0;
}

/* ---- the cases ---------------------------------------------------------- */

static void need_server(void)
{
	if (unavailable)
		skip();
}

static void login_and_io_work(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	login_ok(&s, NULL);
	printf("# negotiated: MaxRecvDataSegmentLength %u, FirstBurstLength %u, MaxBurstLength %u, "
	       "InitialR2T %s, ImmediateData %s\n", s.send_mrdsl, s.first_burst, s.max_burst,
	       s.initial_r2t ? "Yes" : "No", s.immediate_data ? "Yes" : "No");
	tur_ok(&s);
	write_verify(&s, SCRATCH(0), 8, 0x100);
	logout(&s);
	healthy();
}

/* PERSISTENT RESERVE OUT REGISTER (or unregister, sa_key 0) of key on s. */
static void pr_register(struct sess *s, uint64_t key, uint64_t sa_key)
{
	uint8_t cdb[10] = { 0x5f, 0x00, 0, 0, 0, 0, 0, 0, 24, 0 };
	uint8_t param[24] = { 0 };
	for (unsigned i = 0; i < 8; i++) {
		param[i] = (uint8_t)(key >> (56 - 8 * i));
		param[8 + i] = (uint8_t)(sa_key >> (56 - 8 * i));
	}
	struct result r;
	scsi_cmd(s, cdb, sizeof(cdb), true, param, sizeof(param), F_NONE, &r);
	expect_good(&r, "PERSISTENT RESERVE OUT REGISTER");
}

/* PERSISTENT RESERVE IN READ FULL STATUS with allocation length len. */
static void pr_full_status(struct sess *s, uint8_t *buf, uint16_t len)
{
	uint8_t cdb[10] = { 0x5e, 0x03, 0, 0, 0, 0, 0, (uint8_t)(len >> 8), (uint8_t)len, 0 };
	struct result r;
	memset(buf, 0xee, len);
	scsi_cmd(s, cdb, sizeof(cdb), false, buf, len, F_NONE, &r);
	expect_good(&r, "PERSISTENT RESERVE IN READ FULL STATUS");
}

/*
 * READ FULL STATUS names a registrant that registered over iSCSI by its
 * iSCSI initiator port (SPC-5 7.6.4.6: protocol identifier 5h, format 01b,
 * "<name>,i,0x<ISID>" NUL-terminated and padded to a multiple of 4, at
 * least 20 bytes), and the allocation length cuts that list, not the
 * emulation's.
 */
/* READ FULL STATUS through s: the descriptor of key names the port by the
 * iSCSI TransportID want ("<name>,i,0x<ISID>"); returns the list's length. */
static uint32_t assert_iscsi_tid(struct sess *s, uint64_t key, const char *want)
{
	uint8_t buf[1024];
	pr_full_status(s, buf, sizeof(buf));
	uint32_t total = 8 + get32(buf + 4);
	assert_true(total <= sizeof(buf));
	const uint8_t *e = NULL;
	for (uint32_t off = 8; off + 24 <= total; off += 24 + get32(buf + off + 20)) {
		uint64_t k = 0;
		for (unsigned i = 0; i < 8; i++)
			k = k << 8 | buf[off + i];
		if (k == key)
			e = buf + off;
	}
	assert_non_null(e);
	uint32_t tid_len = get32(e + 20);
	const uint8_t *tid = e + 24;
	printf("# TransportID: %u bytes, byte 0 0x%02x, \"%.*s\"\n", tid_len, tid[0],
	       (int)(tid_len > 4 ? tid_len - 4 : 0), (const char *)tid + 4);
	assert_int_equal(tid[0], 0x45);                   /* FORMAT 01b, iSCSI */
	assert_int_equal(tid_len % 4, 0);
	assert_true(tid_len >= 24);
	assert_int_equal(tid[2] << 8 | tid[3], tid_len - 4);  /* ADDITIONAL LENGTH */
	assert_true(strlen(want) + 1 <= tid_len - 4);
	assert_memory_equal(tid + 4, want, strlen(want) + 1);
	for (uint32_t i = 4 + (uint32_t)strlen(want) + 1; i < tid_len; i++)
		assert_int_equal(tid[i], 0);                 /* padding */
	return total;
}

static void pr_full_status_names_the_iscsi_port(void **state)
{
	(void)state;
	need_server();
	static const char name[] = "iqn.2026-11.org.hbakit.test:pr-full-status";
	const uint64_t key = 0x1122334455667788ull;
	/* First more ports than the target remembers, each a new ISID that
	 * logs in and sends a PERSISTENT RESERVE OUT (a REGISTER of key 0,
	 * which changes nothing): the port that registers next is still named
	 * by its iSCSI TransportID. */
	for (unsigned i = 0; i < 300; i++) {
		struct sess o;
		login_ok(&o, &(struct login_opts){ .initiator = "iqn.2026-11.org.hbakit.test:churn" });
		pr_register(&o, 0, 0);
		logout(&o);
	}
	unsigned seq = isid_seq;
	struct sess s;
	login_ok(&s, &(struct login_opts){ .initiator = name });
	char want[256];
	snprintf(want, sizeof(want), "%s,i,0x8048424b%02x%02x", name, (seq >> 8) & 0xff, seq & 0xff);
	pr_register(&s, 0, key);
	uint32_t total = assert_iscsi_tid(&s, key, want);

	/* A short allocation length: the header still counts the whole list. */
	uint8_t head[16];
	pr_full_status(&s, head, sizeof(head));
	assert_int_equal(get32(head + 4), total - 8);

	pr_register(&s, key, 0);
	logout(&s);
	healthy();
}

/* Writes through every data path the protocol has and reads them back. */
static void writes_and_reads_through_every_data_path(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	/* Immediate data and unsolicited Data-Out, then R2T for the rest. */
	const char *unsol[] = { "InitialR2T=No", "ImmediateData=Yes", "FirstBurstLength=65536",
				"MaxBurstLength=262144", NULL };
	login_ok(&s, &(struct login_opts){ .keys = unsol });
	uint32_t lba = SCRATCH(1);
	write_verify(&s, lba, 8, 0x201);                       /* 4 KiB */
	printf("# 4 KiB write: %u immediate bytes, %u unsolicited PDUs, %u R2Ts\n", s.imm_bytes,
	       s.unsol_pdus, s.r2ts);
	if (s.immediate_data)
		assert_int_equal(s.imm_bytes, 4096);
	write_verify(&s, lba + 16, 512, 0x202);                /* 256 KiB */
	printf("# 256 KiB write: %u immediate bytes, %u unsolicited PDUs, %u R2Ts (%u Data-Out)\n",
	       s.imm_bytes, s.unsol_pdus, s.r2ts, s.solicited_pdus);
	assert_true(s.r2ts >= 1);   /* beyond FirstBurstLength only R2T may fetch data */
	if (!s.initial_r2t && s.first_burst > s.imm_bytes)
		assert_true(s.unsol_pdus >= 1);
	if (s.initial_r2t || !s.immediate_data)
		printf("# note: the target negotiated InitialR2T=%s ImmediateData=%s\n",
		       s.initial_r2t ? "Yes" : "No", s.immediate_data ? "Yes" : "No");
	logout(&s);

	/* Unsolicited Data-Out without immediate data, then R2T. */
	const char *dataout[] = { "InitialR2T=No", "ImmediateData=No", "FirstBurstLength=65536",
				  "MaxBurstLength=131072", NULL };
	login_ok(&s, &(struct login_opts){ .keys = dataout });
	if (s.initial_r2t || s.immediate_data)
		fail_msg("the target did not agree to InitialR2T=No ImmediateData=No");
	write_verify(&s, lba + 1024 + 2048, 512, 0x205);        /* 256 KiB */
	printf("# 256 KiB write, unsolicited: %u immediate bytes, %u unsolicited PDUs, %u R2Ts\n",
	       s.imm_bytes, s.unsol_pdus, s.r2ts);
	assert_int_equal(s.imm_bytes, 0);
	assert_true(s.unsol_pdus >= 1);
	assert_true(s.r2ts >= 2);   /* 192 KiB in bursts of at most 128 KiB */
	logout(&s);

	/* R2T only, and small data segments both ways. */
	const char *r2t[] = { "InitialR2T=Yes", "ImmediateData=No", "MaxRecvDataSegmentLength=8192",
			      "MaxBurstLength=65536", NULL };
	login_ok(&s, &(struct login_opts){ .keys = r2t });
	assert_true(s.initial_r2t);
	assert_false(s.immediate_data);
	write_verify(&s, lba + 600, 384, 0x203);               /* 192 KiB */
	printf("# 192 KiB write with R2T only: %u R2Ts, %u Data-Out PDUs\n", s.r2ts, s.solicited_pdus);
	assert_int_equal(s.imm_bytes, 0);
	assert_int_equal(s.unsol_pdus, 0);
	assert_true(s.r2ts >= 3);   /* MaxBurstLength 64 KiB */
	/* A 1 MiB read in Data-In PDUs of at most 8 KiB, in order. */
	uint8_t *big = malloc(1u << 20);
	assert_non_null(big);
	tl_fill(big, lba + 1024, 2048, BS, 0x204);
	rw_ok(&s, true, lba + 1024, 2048, big);
	memset(big, 0, 1u << 20);
	rw_ok(&s, false, lba + 1024, 2048, big);
	printf("# 1 MiB read: %u Data-In PDUs\n", s.datain_pdus);
	assert_true(s.datain_pdus >= 128);
	assert_true(tl_check(big, lba + 1024, 2048, BS, 0x204));
	free(big);
	/* Everything written above is still right. */
	assert_true(holds(&s, lba, 8, 0x201));
	assert_true(holds(&s, lba + 16, 512, 0x202));
	logout(&s);
	healthy();
}

/* An initiator that offers a FirstBurstLength above the MaxBurstLength it
 * offered first is answered with one no larger (RFC 7143 13.14), and
 * unsolicited data up to that answer is taken. */
static void first_burst_never_above_max_burst(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	const char *keys[] = { "InitialR2T=No", "ImmediateData=No", "MaxBurstLength=32768",
			       "FirstBurstLength=131072", NULL };
	login_ok(&s, &(struct login_opts){ .keys = keys });
	assert_int_equal(s.max_burst, 32768);
	assert_int_equal(s.first_burst, 32768);
	write_verify(&s, SCRATCH(1) + 4096, 256, 0x207);       /* 128 KiB */
	assert_true(s.unsol_pdus >= 1);
	logout(&s);
}

/* The same keys the other way round, as RFC 7143 allows: FirstBurstLength
 * before a smaller MaxBurstLength.  The answer is still no larger than
 * MaxBurstLength, and the target takes unsolicited data up to it. */
static void first_burst_offered_before_max_burst(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	const char *keys[] = { "InitialR2T=No", "ImmediateData=No", "FirstBurstLength=65536",
			       "MaxBurstLength=16384", NULL };
	login_ok(&s, &(struct login_opts){ .keys = keys });
	printf("# FirstBurstLength=65536 before MaxBurstLength=16384: answered %u and %u\n",
	       s.first_burst, s.max_burst);
	assert_int_equal(s.max_burst, 16384);
	if (s.first_burst > s.max_burst)
		fail_msg("FirstBurstLength %u answered above MaxBurstLength %u", s.first_burst,
			 s.max_burst);
	write_verify(&s, SCRATCH(13), 128, 0xd00);                 /* 64 KiB */
	assert_true(s.unsol_pdus >= 1);
	assert_true(s.r2ts >= 1);
	logout(&s);
	healthy();
}

static void unknown_opcode_is_rejected(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	login_ok(&s, NULL);
	uint8_t h[BHS] = { 0x1e, 0x80 };     /* no such initiator opcode */
	put32(h + 16, s.itt++);
	put32(h + 24, s.cmdsn);
	put32(h + 28, s.expstatsn);
	assert_int_equal(send_pdu(&s, h, NULL, 0, 0), 0);
	expect_refusal(&s, "opcode 0x1e");
	sess_close(&s);
	healthy();
}

static void data_segment_beyond_mrdsl_is_refused(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	login_ok(&s, NULL);
	/* A NOP-Out ping with a data segment 4 KiB longer than the target
	 * takes, sent in full. */
	uint32_t n = s.send_mrdsl + 4096;
	uint8_t *d = calloc(1, n);
	assert_non_null(d);
	uint8_t h[BHS] = { IMMEDIATE | OP_NOP_OUT, 0x80 };
	put32(h + 16, s.itt++);
	put32(h + 20, NO_TAG);
	put32(h + 24, s.cmdsn);
	put32(h + 28, s.expstatsn);
	send_pdu(&s, h, d, n, 0);
	free(d);
	expect_refusal(&s, "data segment MaxRecvDataSegmentLength + 4 KiB");
	sess_close(&s);

	/* A SCSI command announcing a 16 MiB data segment, with 4 KiB of it:
	 * the target must not wait for the rest. */
	login_ok(&s, NULL);
	uint8_t cdb[10] = { 0x2a, 0, 0, 0, 0x30, 0, 0, 0x80, 0, 0 };
	uint8_t c[BHS + 4096] = { 0 };
	cmd_header(&s, c, cdb, 10, true, 16u << 20, s.itt++);
	put24(c + 5, 0xffffff);
	assert_int_equal(send_all(s.fd, c, sizeof(c)), 0);
	expect_refusal(&s, "data segment length 16 MiB");
	sess_close(&s);
	healthy();
}

static void huge_ahs_is_refused(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	login_ok(&s, NULL);
	uint8_t pdu[BHS + 1020] = { 0 };
	static const uint8_t tur[6];
	cmd_header(&s, pdu, tur, 6, false, 0, s.itt++);
	pdu[4] = 255;                         /* TotalAHSLength: 1020 bytes */
	/* The first AHS claims 65532 bytes of extended CDB. */
	pdu[BHS] = 0xff;
	pdu[BHS + 1] = 0xfc;
	pdu[BHS + 2] = 1;
	memset(pdu + BHS + 4, 0xa5, 1016);
	assert_int_equal(send_all(s.fd, pdu, sizeof(pdu)), 0);
	expect_refusal(&s, "AHS of 1020 bytes with an AHS length of 65532");
	sess_close(&s);
	healthy();
}

static void truncated_pdu_then_close(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	login_ok(&s, NULL);
	uint8_t h[BHS];
	static const uint8_t tur[6];
	cmd_header(&s, h, tur, 6, false, 0, s.itt++);
	assert_int_equal(send_all(s.fd, h, 20), 0);
	sess_close(&s);
	/* And before login: half a Login Request. */
	int fd = tcp_connect(srv_port);
	assert_true(fd >= 0);
	uint8_t l[BHS] = { IMMEDIATE | OP_LOGIN, 0x87 };
	assert_int_equal(send_all(fd, l, 30), 0);
	close(fd);
	healthy();
}

static void cmdsn_outside_the_window_is_not_executed(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	login_ok(&s, NULL);
	tur_ok(&s);
	uint8_t buf[4096];
	tl_fill(buf, SCRATCH(2), 8, BS, 0x300);
	/* A WRITE far ahead of the window: it must never be carried out. */
	uint8_t cdb[10] = { 0x2a, 0, (uint8_t)(SCRATCH(2) >> 24), (uint8_t)(SCRATCH(2) >> 16),
			    (uint8_t)(SCRATCH(2) >> 8), (uint8_t)SCRATCH(2), 0, 0, 8, 0 };
	uint8_t h[BHS];
	uint32_t bad_itt = s.itt++;
	cmd_header(&s, h, cdb, 10, true, 4096, bad_itt);
	put32(h + 24, s.cmdsn + 0x40000000u);
	bool imm = s.immediate_data && s.first_burst >= 4096 && s.send_mrdsl >= 4096;
	assert_int_equal(send_pdu(&s, h, buf, imm ? 4096 : 0, 0), 0);
	/* And one behind it (an old CmdSN). */
	uint32_t old_itt = s.itt++;
	cmd_header(&s, h, cdb, 10, true, 4096, old_itt);
	put32(h + 24, s.cmdsn - 1000);
	assert_int_equal(send_pdu(&s, h, buf, imm ? 4096 : 0, 0), 0);
	/* Then a TEST UNIT READY in the window: it answers, the others do not. */
	static const uint8_t tur[6];
	uint32_t good_itt = s.itt++;
	cmd_header(&s, h, tur, 6, false, 0, good_itt);
	s.cmdsn++;
	assert_int_equal(send_pdu(&s, h, NULL, 0, 0), 0);
	bool answered = false, dropped = false;
	for (uint64_t end = now_ms() + REFUSE_MS; now_ms() < end && !answered && !dropped;) {
		struct pdu p;
		int rc = recv_pdu(&s, &p, REFUSE_MS);
		if (rc == R_CLOSED) {
			dropped = true;
			break;
		}
		if (rc != R_PDU)
			fail_msg("no answer to a TEST UNIT READY in the window (%d)", rc);
		unsigned op = p.h[0] & 0x3f;
		uint32_t itt = get32(p.h + 16);
		pdu_free(&p);
		if (op == OP_REJECT) {
			printf("# CmdSN outside the window: Reject reason 0x%02x\n", p.h[2]);
			continue;
		}
		if (itt == bad_itt || itt == old_itt)
			fail_msg("the target answered a command with CmdSN outside the window (opcode 0x%02x)", op);
		if (itt == good_itt && op == OP_SCSI_RSP)
			answered = true;
	}
	if (dropped)
		printf("# CmdSN outside the window: connection dropped\n");
	else if (!answered)
		fail_msg("no answer to a TEST UNIT READY after commands outside the window");
	else {
		/* Nothing comes for the two commands afterwards either. */
		struct pdu p;
		int rc = recv_pdu(&s, &p, QUIET_MS);
		if (rc == R_PDU) {
			unsigned op = p.h[0] & 0x3f;
			pdu_free(&p);
			if (op != OP_REJECT)
				fail_msg("late opcode 0x%02x for a command outside the window", op);
		}
		printf("# CmdSN outside the window: silently ignored\n");
	}
	sess_close(&s);
	login_ok(&s, NULL);
	assert_false(holds(&s, SCRATCH(2), 8, 0x300));
	logout(&s);
	healthy();
}

/* A WRITE(10) of blocks at lba from buf, all of it immediate data, with
 * CmdSN cmdsn and task tag itt; nothing is awaited. */
static void write_imm(struct sess *s, uint32_t itt, uint32_t cmdsn, uint32_t lba, uint16_t blocks,
		      const uint8_t *buf)
{
	uint8_t cdb[10] = { 0x2a, 0, (uint8_t)(lba >> 24), (uint8_t)(lba >> 16), (uint8_t)(lba >> 8),
			    (uint8_t)lba, 0, (uint8_t)(blocks >> 8), (uint8_t)blocks, 0 };
	uint32_t len = (uint32_t)blocks * BS;
	assert_true(s->immediate_data && len <= s->first_burst && len <= s->send_mrdsl);
	uint8_t h[BHS];
	cmd_header(s, h, cdb, sizeof(cdb), true, len, itt);
	put32(h + 24, cmdsn);
	assert_int_equal(send_pdu(s, h, buf, len, 0), 0);
}

/* RFC 7143 4.2.2.1: a command that arrives ahead of a CmdSN gap waits,
 * within the window, until the gap fills; one beyond MaxCmdSN is ignored.
 * CmdSN N + 1 (a write) comes first and must not run; then N (a read),
 * and both complete. */
static void command_ahead_of_a_gap_waits(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	uint32_t lba = SCRATCH(17), far = SCRATCH(17) + 64;
	login_ok(&s, NULL);
	write_verify(&s, lba, 8, 0x1700);
	write_verify(&s, far, 8, 0x1710);
	uint8_t w[8 * BS], far_w[8 * BS], rd[8 * BS];
	tl_fill(w, lba, 8, BS, 0x1701);
	tl_fill(far_w, far, 8, BS, 0x1711);
	uint32_t n = s.cmdsn, read_itt = s.itt++, write_itt = s.itt++, far_itt = s.itt++;
	write_imm(&s, write_itt, n + 1, lba, 8, w);
	/* Beyond MaxCmdSN: ignored, gap or not. */
	write_imm(&s, far_itt, s.maxcmdsn + 1, far, 8, far_w);
	struct pdu p;
	int rc = recv_pdu(&s, &p, QUIET_MS);
	if (rc == R_PDU) {
		unsigned op = p.h[0] & 0x3f;
		uint32_t itt = get32(p.h + 16);
		pdu_free(&p);
		fail_msg("opcode 0x%02x for task 0x%x came while CmdSN %u was missing", op, itt, n);
	}
	assert_int_equal(rc, R_TIMEOUT);

	/* CmdSN N fills the gap. */
	uint8_t cdb[10] = { 0x28, 0, (uint8_t)(lba >> 24), (uint8_t)(lba >> 16), (uint8_t)(lba >> 8),
			    (uint8_t)lba, 0, 0, 8, 0 };
	uint8_t h[BHS];
	cmd_header(&s, h, cdb, sizeof(cdb), false, sizeof(rd), read_itt);
	put32(h + 24, n);
	assert_int_equal(send_pdu(&s, h, NULL, 0, 0), 0);
	s.cmdsn = n + 2;
	bool read_done = false, write_done = false;
	uint32_t got = 0;
	while (!read_done || !write_done) {
		assert_int_equal(recv_pdu(&s, &p, IO_MS), R_PDU);
		unsigned op = p.h[0] & 0x3f;
		uint32_t itt = get32(p.h + 16);
		if (itt == read_itt && op == OP_DATA_IN) {
			assert_true(get32(p.h + 40) + p.dlen <= sizeof(rd));
			memcpy(rd + get32(p.h + 40), p.data, p.dlen);
			got += p.dlen;
			if (p.h[1] & 0x01) {
				assert_int_equal(p.h[3], 0);
				read_done = true;
			}
		} else if (itt == read_itt && op == OP_SCSI_RSP) {
			fail_msg("READ(10) with CmdSN %u: status 0x%02x", n, p.h[3]);
		} else if (itt == write_itt && op == OP_SCSI_RSP) {
			assert_int_equal(p.h[2], 0);
			assert_int_equal(p.h[3], 0);
			write_done = true;
		} else {
			fail_msg("opcode 0x%02x for task 0x%x", op, itt);
		}
		pdu_free(&p);
	}
	assert_int_equal(got, sizeof(rd));
	rc = recv_pdu(&s, &p, QUIET_MS);
	if (rc == R_PDU) {
		pdu_free(&p);
		fail_msg("an answer came for the command beyond MaxCmdSN");
	}
	assert_true(holds(&s, lba, 8, 0x1701));
	assert_true(holds(&s, far, 8, 0x1710));
	logout(&s);
	healthy();
}

/* RFC 7143 11.4.5: an INQUIRY whose allocation length (96) is above the
 * Expected Data Transfer Length (36) returns the 36 bytes the initiator
 * expects, with the O bit and, as residual, what did not fit. */
static void inquiry_overflow_is_reported(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	login_ok(&s, NULL);
	tur_ok(&s);
	uint8_t full[255], part[96];
	uint8_t cdb[6] = { 0x12, 0, 0, 0, 255, 0 };
	struct result r;
	scsi_cmd(&s, cdb, 6, false, full, sizeof(full), F_NONE, &r);
	expect_good(&r, "INQUIRY of 255 bytes");
	uint32_t n = 5u + full[4];              /* the standard data's length */
	printf("# standard INQUIRY data: %u bytes\n", n);
	assert_true(n > 36);
	assert_false(r.flags & 0x04);

	cdb[4] = 96;
	memset(part, 0xee, sizeof(part));
	scsi_cmd(&s, cdb, 6, false, part, 36, F_NONE, &r);
	expect_good(&r, "INQUIRY of 96 bytes with an EDTL of 36");
	if (!(r.flags & 0x04) || (r.flags & 0x02))
		fail_msg("INQUIRY with allocation length 96, EDTL 36: flags 0x%02x, residual %u; "
			 "expected O and residual %u", r.flags, r.residual, (n < 96 ? n : 96) - 36);
	assert_int_equal(r.residual, (n < 96 ? n : 96) - 36);
	assert_memory_equal(part, full, 36);
	assert_int_equal(part[36], 0xee);
	logout(&s);
}

/* A write whose first Data-Out answering an R2T is spoilt by fault: the
 * target must refuse it (Reject, dropped connection, or a failed command)
 * and never write outside the command's blocks. */
static void spoilt_dataout(enum fault fault, const char *what, unsigned area)
{
	struct sess s;
	const char *r2t[] = { "InitialR2T=Yes", "ImmediateData=No", "MaxRecvDataSegmentLength=65536", NULL };
	const char *unsol[] = { "InitialR2T=No", "ImmediateData=No", "FirstBurstLength=65536", NULL };
	bool unsolicited = fault >= F_UNSOL_TTT;
	uint32_t lba = SCRATCH(area);
	/* 32 blocks to write, 32 blocks of guard behind them. */
	login_ok(&s, NULL);
	write_verify(&s, lba, 64, 0x400 + area);
	logout(&s);

	login_ok(&s, &(struct login_opts){ .keys = unsolicited ? unsol : r2t });
	if (unsolicited && (s.initial_r2t || s.immediate_data)) {
		sess_close(&s);
		fail_msg("%s: the target did not agree to InitialR2T=No ImmediateData=No", what);
	}
	uint8_t *w = malloc(32 * BS);
	assert_non_null(w);
	tl_fill(w, lba, 32, BS, 0x500 + area);
	struct result r;
	rw10(&s, true, lba, 32, w, fault, &r);
	free(w);
	if (r.out == OUT_RESPONSE && r.status == 0)
		fail_msg("%s: the write completed with GOOD status", what);
	if (r.out == OUT_TIMEOUT)
		fail_msg("%s: neither a Reject, a failed command nor a dropped connection in %d ms",
			 what, IO_MS);
	if (r.out == OUT_PROTO)
		fail_msg("%s: %s", what, proto_err);
	printf("# %s: %s (status %d, reject reason 0x%02x)\n", what, outcome_name[r.out], r.status,
	       r.reject_reason);
	sess_close(&s);

	login_ok(&s, NULL);
	if (!holds(&s, lba + 32, 32, 0x400 + area))
		fail_msg("%s: the blocks behind the write changed", what);
	logout(&s);
	healthy();
}

static void dataout_with_wrong_ttt(void **state)
{
	(void)state;
	need_server();
	spoilt_dataout(F_TTT, "Data-Out with a wrong target transfer tag", 3);
}

static void dataout_with_wrong_offset(void **state)
{
	(void)state;
	need_server();
	spoilt_dataout(F_OFFSET, "Data-Out at an offset beyond the transfer", 4);
}

static void dataout_with_wrong_datasn(void **state)
{
	(void)state;
	need_server();
	spoilt_dataout(F_DATASN, "Data-Out with DataSN 7 first", 5);
}

static void unsolicited_dataout_with_wrong_ttt(void **state)
{
	(void)state;
	need_server();
	spoilt_dataout(F_UNSOL_TTT, "unsolicited Data-Out with a target transfer tag", 10);
}

static void unsolicited_dataout_with_wrong_offset(void **state)
{
	(void)state;
	need_server();
	spoilt_dataout(F_UNSOL_OFFSET, "unsolicited Data-Out 4 KiB ahead", 11);
}

static void unsolicited_dataout_with_wrong_datasn(void **state)
{
	(void)state;
	need_server();
	spoilt_dataout(F_UNSOL_DATASN, "unsolicited Data-Out with DataSN 27 first", 12);
}

static void client_closes_mid_dataout(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	const char *r2t[] = { "InitialR2T=Yes", "ImmediateData=No", NULL };
	uint8_t *w = malloc(256 * 1024);
	assert_non_null(w);
	tl_fill(w, SCRATCH(6), 512, BS, 0x600);
	struct result r;
	login_ok(&s, &(struct login_opts){ .keys = r2t });
	rw10(&s, true, SCRATCH(6), 512, w, F_CLOSE_HALF, &r);
	assert_int_equal(r.out, OUT_CLOSED);
	login_ok(&s, &(struct login_opts){ .keys = r2t });
	rw10(&s, true, SCRATCH(6), 512, w, F_CLOSE_MIDPDU, &r);
	assert_int_equal(r.out, OUT_CLOSED);
	free(w);
	healthy();
	/* The blocks are usable again. */
	login_ok(&s, NULL);
	write_verify(&s, SCRATCH(6), 512, 0x601);
	logout(&s);
}

static void header_digests(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	const char *hd[] = { "HeaderDigest=CRC32C", NULL };
	int rc = login(&s, &(struct login_opts){ .keys = hd });
	if (rc) {
		fail_msg("login offering only HeaderDigest=CRC32C failed: %d (0x%04x) %s", rc, rc > 0 ? rc : 0,
			 proto_err);
	}
	if (!s.hdigest) {
		const char *v = key_get(&s, "HeaderDigest");
		sess_close(&s);
		fail_msg("the target answered HeaderDigest=%s to an offer of CRC32C only", v ? v : "(nothing)");
	}
	/* Digested PDUs both ways. */
	tur_ok(&s);
	write_verify(&s, SCRATCH(7), 128, 0x700);
	assert_int_equal(s.digest_errors, 0);
	/* A write with a wrong header digest must not be carried out. */
	uint8_t w[4096];
	tl_fill(w, SCRATCH(7) + 200, 8, BS, 0x701);
	uint8_t cdb[10] = { 0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0 };
	put32(cdb + 2, SCRATCH(7) + 200);
	uint8_t h[BHS];
	cmd_header(&s, h, cdb, 10, true, 4096, s.itt++);
	bool imm = s.immediate_data && s.first_burst >= 4096 && s.send_mrdsl >= 4096;
	assert_int_equal(send_pdu(&s, h, w, imm ? 4096 : 0, SEND_BAD_HDIGEST), 0);
	struct pdu p;
	rc = recv_pdu(&s, &p, REFUSE_MS);
	if (rc == R_PDU) {
		unsigned op = p.h[0] & 0x3f;
		uint8_t st = p.h[3];
		pdu_free(&p);
		if (op == OP_SCSI_RSP && st == 0)
			fail_msg("a write with a bad header digest completed with GOOD status");
		if (op == OP_R2T)
			fail_msg("the target asked for the data of a PDU with a bad header digest");
		printf("# bad header digest: opcode 0x%02x\n", op);
	} else if (rc == R_TIMEOUT) {
		/* Discarded: then the session goes on with the next PDU. */
		printf("# bad header digest: PDU discarded\n");
		tur_ok(&s);
	} else {
		printf("# bad header digest: connection dropped\n");
	}
	sess_close(&s);
	login_ok(&s, NULL);
	assert_false(holds(&s, SCRATCH(7) + 200, 8, 0x701));
	assert_true(holds(&s, SCRATCH(7), 128, 0x700));
	logout(&s);
	healthy();
}

static void data_digests(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	const char *dd[] = { "HeaderDigest=CRC32C", "DataDigest=CRC32C", "InitialR2T=No", NULL };
	int rc = login(&s, &(struct login_opts){ .keys = dd });
	if (rc)
		fail_msg("login offering CRC32C digests failed: %d (0x%04x) %s", rc, rc > 0 ? rc : 0, proto_err);
	if (!s.ddigest) {
		const char *v = key_get(&s, "DataDigest");
		sess_close(&s);
		fail_msg("the target answered DataDigest=%s to an offer of CRC32C only", v ? v : "(nothing)");
	}
	write_verify(&s, SCRATCH(8), 512, 0x800);   /* immediate, unsolicited, R2T, Data-In */
	assert_int_equal(s.digest_errors, 0);
	/* Immediate data with a wrong data digest: refused, not written. */
	uint8_t w[4096];
	tl_fill(w, SCRATCH(8) + 600, 8, BS, 0x801);
	struct result r;
	rw10(&s, true, SCRATCH(8) + 600, 8, w, F_DDIGEST, &r);
	if (r.out == OUT_RESPONSE && r.status == 0)
		fail_msg("a write with a bad data digest completed with GOOD status");
	if (r.out == OUT_PROTO)
		fail_msg("bad data digest: %s", proto_err);
	printf("# bad data digest: %s (status %d, reject reason 0x%02x)\n", outcome_name[r.out],
	       r.status, r.reject_reason);
	sess_close(&s);
	login_ok(&s, NULL);
	assert_false(holds(&s, SCRATCH(8) + 600, 8, 0x801));
	assert_true(holds(&s, SCRATCH(8), 512, 0x800));
	logout(&s);
	healthy();
}

static void pdus_before_login_are_refused(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	memset(&s, 0, sizeof(s));
	/* A SCSI command, then a NOP-Out, as the first PDU of a connection. */
	for (int i = 0; i < 2; i++) {
		s.fd = tcp_connect(srv_port);
		assert_true(s.fd >= 0);
		uint8_t h[BHS] = { 0 };
		static const uint8_t tur[6];
		if (i == 0) {
			cmd_header(&s, h, tur, 6, false, 0, 1);
		} else {
			h[0] = IMMEDIATE | OP_NOP_OUT;
			h[1] = 0x80;
			put32(h + 16, 1);
			put32(h + 20, NO_TAG);
		}
		uint64_t t0 = now_ms();
		assert_int_equal(send_pdu(&s, h, NULL, 0, 0), 0);
		const char *what = i == 0 ? "SCSI command before login" : "NOP-Out before login";
		expect_refusal(&s, what);
		refused_before_login_timeout(t0, what);
		sess_close(&s);
	}
	healthy();
}

static void logins_with_garbage_are_refused(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	/* Binary garbage instead of key=value text. */
	uint8_t junk[700];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 37 + 11);
	junk[100] = 0;
	uint64_t t0 = now_ms();
	int rc = login(&s, &(struct login_opts){ .raw = junk, .raw_len = sizeof(junk) });
	printf("# binary login text: %d (0x%04x)\n", rc, rc > 0 ? rc : 0);
	assert_true(rc == LOGIN_CLOSED || (rc > 0 && rc >> 8 == 2));
	refused_before_login_timeout(t0, "binary login text");
	sess_close(&s);
	/* Keys without '=' and a key of 5000 bytes. */
	char text[6000];
	size_t n = (size_t)snprintf(text, sizeof(text), "InitiatorName=iqn.2026-11.org.hbakit.test:x") + 1;
	n += (size_t)snprintf(text + n, sizeof(text) - n, "ThisKeyHasNoValue") + 1;
	memset(text + n, 'K', 5000);
	n += 5000;
	text[n++] = 0;
	t0 = now_ms();
	rc = login(&s, &(struct login_opts){ .raw = text, .raw_len = n });
	printf("# malformed keys: %d (0x%04x)\n", rc, rc > 0 ? rc : 0);
	assert_true(rc == LOGIN_CLOSED || (rc > 0 && rc >> 8 == 2));
	refused_before_login_timeout(t0, "malformed keys");
	sess_close(&s);
	/* No InitiatorName. */
	static const char noname[] = "SessionType=Normal\0AuthMethod=None";
	t0 = now_ms();
	rc = login(&s, &(struct login_opts){ .raw = noname, .raw_len = sizeof(noname) });
	printf("# no InitiatorName: %d (0x%04x)\n", rc, rc > 0 ? rc : 0);
	assert_true(rc == LOGIN_CLOSED || (rc > 0 && rc >> 8 == 2));
	refused_before_login_timeout(t0, "no InitiatorName");
	sess_close(&s);
	/* A target that does not exist. */
	t0 = now_ms();
	rc = login(&s, &(struct login_opts){ .target = "iqn.2026-11.org.hbakit:t99" });
	printf("# unknown target: %d (0x%04x)\n", rc, rc > 0 ? rc : 0);
	assert_true(rc == LOGIN_CLOSED || (rc > 0 && rc >> 8 == 2));
	refused_before_login_timeout(t0, "unknown target");
	sess_close(&s);
	/* A protocol version the target cannot speak. */
	t0 = now_ms();
	rc = login(&s, &(struct login_opts){ .version_min = 0x7f });
	printf("# unsupported version: %d (0x%04x)\n", rc, rc > 0 ? rc : 0);
	assert_true(rc == LOGIN_CLOSED || (rc > 0 && rc >> 8 == 2));
	refused_before_login_timeout(t0, "unsupported version");
	sess_close(&s);
	/* Unknown but well-formed keys are answered NotUnderstood; the login
	 * goes on. */
	const char *odd[] = { "X-org.hbakit.test.Unknown=1", "FrobnicationLevel=7", NULL };
	login_ok(&s, &(struct login_opts){ .keys = odd });
	const char *v = key_get(&s, "FrobnicationLevel");
	if (!v || strcmp(v, "NotUnderstood"))
		fail_msg("FrobnicationLevel=7 answered with '%s', not NotUnderstood", v ? v : "(nothing)");
	tur_ok(&s);
	logout(&s);
	healthy();
}

static int count_closed(const int *fds, int n, bool *gone)
{
	int closed = 0;
	for (int i = 0; i < n; i++) {
		if (!gone[i]) {
			uint8_t b[64];
			ssize_t r = recv(fds[i], b, sizeof(b), MSG_DONTWAIT);
			gone[i] = r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR);
		}
		closed += gone[i];
	}
	return closed;
}

/* 200 connections at once, left idle, 20 of them with half a header: the
 * ones beyond --max-connections are closed at once, the rest when the
 * login timeout expires; the target serves a fresh session afterwards. */
static void connection_flood(void **state)
{
	(void)state;
	need_server();
	enum { N = 200, HALF = 20 };
	int fds[N], open_n = 0;
	bool gone[N] = { false };
	for (int i = 0; i < N; i++) {
		fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		assert_true(fds[i] >= 0);
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(srv_port) };
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (connect(fds[i], (struct sockaddr *)&a, sizeof(a)) == 0 || errno == EINPROGRESS)
			open_n++;
	}
	sleep_ms(300);
	uint8_t half[24] = { IMMEDIATE | OP_LOGIN, 0x87 };
	int sent = 0;
	for (int i = 0; i < HALF; i++)
		sent += send(fds[i], half, sizeof(half), MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)sizeof(half);
	sleep_ms(1000);
	int closed = count_closed(fds, N, gone);
	printf("# flood: %d connections opened, %d sent half a header, %d closed by the target at once\n",
	       open_n, sent, closed);
	if (!external) {
		assert_true(server_alive(srv_pid));
		/* A few of the earlier cases' connections may still count. */
		if (closed < N - HBK_ISCSI_MAX_CONNECTIONS - 8)
			fail_msg("only %d of %d connections closed with a limit of %d", closed, N,
				 HBK_ISCSI_MAX_CONNECTIONS);
	}
	/* The rest never log in: they go when the login timeout expires. */
	uint64_t t0 = now_ms(), limit = external ? 0 : LOGIN_TIMEOUT_MS + 5000;
	while (closed < N && now_ms() - t0 < limit) {
		sleep_ms(200);
		closed = count_closed(fds, N, gone);
	}
	printf("# flood: %d closed after %.1f s more\n", closed, (double)(now_ms() - t0) / 1000);
	if (!external && closed < N)
		fail_msg("%d connections that never logged in are still open %u s later", N - closed,
			 (unsigned)(limit / 1000));
	for (int i = 0; i < N; i++)
		close(fds[i]);
	healthy();
}

/* Two sessions of two initiators: a WRITE EXCLUSIVE reservation of one
 * stops the other's writes, not its reads, until it is released. */
/* A session whose writes wait for data that never comes holds buffers for
 * its share only: another session's read is still served. */
static void one_session_cannot_hold_every_buffer(void **state)
{
	(void)state;
	need_server();
	static const char *const keys[] = { "InitialR2T=Yes", "ImmediateData=No", NULL };
	struct sess a, b;
	login_ok(&a, NULL);
	login_ok(&b, &(struct login_opts){ .keys = keys });
	for (uint32_t i = 0; i < 4; i++) {             /* 64 MiB, the whole arena */
		uint8_t cdb[16] = { 0x8a }, h[BHS];
		put32(cdb + 6, i * 32768);
		put32(cdb + 10, 32768);
		cmd_header(&b, h, cdb, 16, true, 16u << 20, 0x9000 + i);
		b.cmdsn++;
		assert_int_equal(send_pdu(&b, h, NULL, 0, 0), 0);
	}
	sleep_ms(200);
	uint8_t buf[4096];
	rw_ok(&a, false, SCRATCH(3), 8, buf);
	sess_close(&b);
	logout(&a);
	healthy();
}

/* Opens a session that holds 16 MiB of the shared arena with a write whose
 * data it never sends. */
static void arena_hog(struct sess *h, uint32_t lba)
{
	static const char *const keys[] = { "InitialR2T=Yes", "ImmediateData=No", NULL };
	uint8_t cdb[16] = { 0x8a }, hdr[BHS];
	login_ok(h, &(struct login_opts){ .keys = keys });
	put32(cdb + 6, lba);
	put32(cdb + 10, 32768);
	cmd_header(h, hdr, cdb, 16, true, 16u << 20, 0x9100);
	h->cmdsn++;
	assert_int_equal(send_pdu(h, hdr, NULL, 0, 0), 0);
}

/* Commands too large for a connection's share of the arena take heap
 * memory, but the target's heap buffers have one budget (64 MiB): with two
 * writes of 32 MiB waiting for their data, a third session's one gets no
 * R2T (its buffer is not allocated) until one of the two is gone. */
static void heap_buffers_have_one_budget(void **state)
{
	(void)state;
	need_server();
	if (external)
		skip();                 /* the budget is this target's */
	static const char *const keys[] = { "InitialR2T=Yes", "ImmediateData=No", NULL };
	enum { N = 3 };
	struct sess s[N];
	for (unsigned i = 0; i < N; i++) {
		login_ok(&s[i], &(struct login_opts){ .keys = keys });
		tur_ok(&s[i]);
	}
	for (unsigned i = 0; i < N; i++) {
		uint8_t cdb[16] = { 0x8a }, h[BHS];
		put32(cdb + 6, 0);
		put32(cdb + 10, 65536);         /* 32 MiB, never sent */
		cmd_header(&s[i], h, cdb, 16, true, 32u << 20, s[i].itt++);
		s[i].cmdsn++;
		assert_int_equal(send_pdu(&s[i], h, NULL, 0, 0), 0);
		struct pdu p;
		int rc = recv_pdu(&s[i], &p, i < N - 1 ? IO_MS : QUIET_MS);
		if (i < N - 1) {
			assert_int_equal(rc, R_PDU);
			assert_int_equal(p.h[0] & 0x3f, OP_R2T);
			pdu_free(&p);
		} else if (rc == R_PDU) {
			unsigned op = p.h[0] & 0x3f;
			pdu_free(&p);
			fail_msg("a third 32 MiB heap buffer: opcode 0x%02x came at once", op);
		}
	}
	/* The first session goes: the third one's write gets its buffer. */
	sess_close(&s[0]);
	struct pdu p;
	assert_int_equal(recv_pdu(&s[N - 1], &p, IO_MS), R_PDU);
	assert_int_equal(p.h[0] & 0x3f, OP_R2T);
	pdu_free(&p);
	for (unsigned i = 1; i < N; i++)
		sess_close(&s[i]);
	healthy();
}

/* A command that waits for a buffer keeps its unsolicited data aside; what
 * one connection keeps so is bounded (4 MiB): with its share of the arena
 * held, 24 writes of 256 KiB announce their unsolicited data and send it;
 * 16 wait, and the 8 beyond the bound answer TASK SET FULL. */
static void waiting_writes_keep_bounded_data_aside(void **state)
{
	(void)state;
	need_server();
	if (external)
		skip();                 /* the bound is this target's */
	static const char *const keys[] = { "InitialR2T=No", "ImmediateData=No",
					    "FirstBurstLength=262144", "MaxBurstLength=1048576", NULL };
	struct sess s;
	login_ok(&s, &(struct login_opts){ .keys = keys });
	tur_ok(&s);
	assert_int_equal(s.first_burst, 262144);
	assert_true(s.send_mrdsl >= 262144);
	/* 16 MiB of the arena, its data never sent. */
	uint8_t cdb16[16] = { 0x8a }, h[BHS];
	put32(cdb16 + 6, 0);
	put32(cdb16 + 10, 32768);
	uint32_t hog = s.itt++;
	cmd_header(&s, h, cdb16, 16, true, 16u << 20, hog);
	s.cmdsn++;
	assert_int_equal(send_pdu(&s, h, NULL, 0, 0), 0);

	enum { N = 24, WAITING = 16, BLOCKS = 512 };
	uint8_t *w = calloc(1, BLOCKS * BS);
	assert_non_null(w);
	uint32_t first = s.itt;
	for (unsigned i = 0; i < N; i++) {
		uint32_t lba = 32768 + i * BLOCKS;
		uint8_t cdb[10] = { 0x2a, 0, (uint8_t)(lba >> 24), (uint8_t)(lba >> 16),
				    (uint8_t)(lba >> 8), (uint8_t)lba, 0, BLOCKS >> 8, BLOCKS & 0xff, 0 };
		uint32_t itt = s.itt++;
		cmd_header(&s, h, cdb, sizeof(cdb), true, BLOCKS * BS, itt);
		h[1] &= (uint8_t)~0x80;
		s.cmdsn++;
		assert_int_equal(send_pdu(&s, h, NULL, 0, 0), 0);
		assert_int_equal(send_dataout(&s, itt, NO_TAG, 0, 0, w, BLOCKS * BS, true, 0), 0);
	}
	free(w);
	unsigned full = 0;
	for (;;) {
		struct pdu p;
		int rc = recv_pdu(&s, &p, full < N - WAITING ? IO_MS : QUIET_MS);
		if (rc == R_TIMEOUT && full == N - WAITING)
			break;
		if (rc != R_PDU)
			fail_msg("%u of %u writes over the bound answered, then %s", full, N - WAITING,
				 rc == R_TIMEOUT ? "nothing" : "the connection closed");
		unsigned op = p.h[0] & 0x3f;
		uint32_t itt = get32(p.h + 16);
		uint8_t status = p.h[3];
		pdu_free(&p);
		if (op == OP_R2T && itt == hog)
			continue;
		if (op != OP_SCSI_RSP || itt - first < WAITING || itt - first >= N || status != 0x28)
			fail_msg("opcode 0x%02x status 0x%02x for write %u", op, status, itt - first);
		full++;
	}
	printf("# %u writes waiting, %u answered TASK SET FULL\n", WAITING, full);
	sess_close(&s);
	healthy();
}

/* Commands held ahead of a CmdSN gap take no buffer until the gap fills:
 * two sessions that each leave a 32 MiB READ one CmdSN past a gap they
 * never fill must not hold the heap budget (64 MiB), so a third session's
 * 32 MiB write still gets its R2T. */
static void held_commands_take_no_buffer(void **state)
{
	(void)state;
	need_server();
	if (external)
		skip();                 /* the budget is this target's */
	static const char *const keys[] = { "InitialR2T=Yes", "ImmediateData=No", NULL };
	enum { N = 3 };
	struct sess s[N];
	for (unsigned i = 0; i < N; i++) {
		login_ok(&s[i], &(struct login_opts){ .keys = keys });
		tur_ok(&s[i]);
	}
	for (unsigned i = 0; i < N - 1; i++) {
		uint8_t cdb[16] = { 0x88 }, h[BHS];
		put32(cdb + 10, 65536);         /* 32 MiB read */
		cmd_header(&s[i], h, cdb, 16, false, 32u << 20, s[i].itt++);
		put32(h + 24, s[i].cmdsn + 1);  /* ahead of a gap at s[i].cmdsn */
		assert_int_equal(send_pdu(&s[i], h, NULL, 0, 0), 0);
	}
	sleep_ms(300);
	uint8_t cdb[16] = { 0x8a }, h[BHS];
	put32(cdb + 10, 65536);                 /* 32 MiB write */
	cmd_header(&s[2], h, cdb, 16, true, 32u << 20, s[2].itt++);
	s[2].cmdsn++;
	assert_int_equal(send_pdu(&s[2], h, NULL, 0, 0), 0);
	struct pdu p;
	int rc = recv_pdu(&s[2], &p, IO_MS);
	if (rc != R_PDU)
		fail_msg("no R2T for a 32 MiB write while two reads wait on a CmdSN gap");
	unsigned op = p.h[0] & 0x3f;
	pdu_free(&p);
	assert_int_equal(op, OP_R2T);
	for (unsigned i = 0; i < N; i++)
		sess_close(&s[i]);
	healthy();
}

/* RFC 7143 4.2.2.1: commands reach the LUN in CmdSN order.  ORDERED READ
 * N + 2 arrives ahead of the gap at N + 1; ORDERED WRITE N + 1 (immediate
 * data, the same blocks) then fills it but must wait for a buffer (a 16 MiB
 * write, N, holds the connection's share).  Once N is aborted, WRITE N + 1
 * must run first and the read return its data. */
static void held_command_waits_for_the_one_before_it(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	login_ok(&s, NULL);
	uint32_t lba = SCRATCH(20);
	write_verify(&s, lba, 8, 0x2000);       /* old data */
	uint8_t w[8 * BS], rd[8 * BS];
	tl_fill(w, lba, 8, BS, 0x2001);         /* new data */
	assert_true(s.immediate_data && sizeof(w) <= s.first_burst && sizeof(w) <= s.send_mrdsl);
	uint32_t n = s.cmdsn, hog = s.itt++, witt = s.itt++, ritt = s.itt++;
	uint8_t h[BHS];

	/* N: 16 MiB write, no data sent, holds the connection's share. */
	uint8_t hcdb[16] = { 0x8a };
	put32(hcdb + 10, 32768);
	cmd_header(&s, h, hcdb, 16, true, 16u << 20, hog);
	assert_int_equal(send_pdu(&s, h, NULL, 0, 0), 0);
	struct pdu p;
	assert_int_equal(recv_pdu(&s, &p, IO_MS), R_PDU);
	assert_int_equal(p.h[0] & 0x3f, OP_R2T);
	pdu_free(&p);

	/* N + 2: ORDERED READ, ahead of the gap. */
	uint8_t rcdb[10] = { 0x28, 0, (uint8_t)(lba >> 24), (uint8_t)(lba >> 16), (uint8_t)(lba >> 8),
			     (uint8_t)lba, 0, 0, 8, 0 };
	cmd_header(&s, h, rcdb, sizeof(rcdb), false, sizeof(rd), ritt);
	h[1] = (uint8_t)((h[1] & ~7) | 2);      /* ORDERED */
	put32(h + 24, n + 2);
	assert_int_equal(send_pdu(&s, h, NULL, 0, 0), 0);

	/* N + 1: ORDERED WRITE with immediate data; it waits for a buffer. */
	uint8_t wcdb[10] = { 0x2a, 0, (uint8_t)(lba >> 24), (uint8_t)(lba >> 16), (uint8_t)(lba >> 8),
			     (uint8_t)lba, 0, 0, 8, 0 };
	cmd_header(&s, h, wcdb, sizeof(wcdb), true, sizeof(w), witt);
	h[1] = (uint8_t)((h[1] & ~7) | 2);      /* ORDERED */
	put32(h + 24, n + 1);
	assert_int_equal(send_pdu(&s, h, w, sizeof(w), 0), 0);
	s.cmdsn = n + 3;
	assert_int_equal(recv_pdu(&s, &p, 300), R_TIMEOUT);

	/* ABORT TASK N: its buffer frees. */
	uint32_t tm_itt = s.itt++;
	send_tmf(&s, ABORT_TASK, true, tm_itt, hog, s.cmdsn, n);

	bool tm_done = false, read_done = false, write_done = false;
	uint32_t got = 0;
	while (!tm_done || !read_done || !write_done) {
		assert_int_equal(recv_pdu(&s, &p, IO_MS), R_PDU);
		unsigned op = p.h[0] & 0x3f;
		uint32_t itt = get32(p.h + 16);
		if (itt == tm_itt && op == OP_TMF_RSP) {
			assert_int_equal(p.h[2], 0);    /* function complete */
			tm_done = true;
		} else if (itt == ritt && op == OP_DATA_IN) {
			if (!write_done)
				fail_msg("READ with CmdSN %u sent data before WRITE %u ended", n + 2, n + 1);
			assert_true(get32(p.h + 40) + p.dlen <= sizeof(rd));
			memcpy(rd + get32(p.h + 40), p.data, p.dlen);
			got += p.dlen;
			if (p.h[1] & 0x01) {
				assert_int_equal(p.h[3], 0);
				read_done = true;
			}
		} else if (itt == witt && op == OP_SCSI_RSP) {
			assert_int_equal(p.h[2], 0);
			assert_int_equal(p.h[3], 0);
			write_done = true;
		} else {
			fail_msg("opcode 0x%02x for task 0x%x", op, itt);
		}
		pdu_free(&p);
	}
	assert_int_equal(got, sizeof(rd));
	assert_true(tl_check(rd, lba, 8, BS, 0x2001));
	logout(&s);
	healthy();
}

/* A write with immediate data and a data digest arrives while the arena is
 * full, and the digest comes only after a buffer was freed: the data must
 * still reach the LUN (it is taken as received only once its digest is). */
static void immediate_data_waits_for_its_digest(void **state)
{
	(void)state;
	need_server();
	enum { HOGS = 4 };
	static const char *const keys[] = { "DataDigest=CRC32C", "ImmediateData=Yes",
					    "InitialR2T=Yes", NULL };
	struct sess a, hog[HOGS];
	login_ok(&a, &(struct login_opts){ .keys = keys });
	if (!a.ddigest)
		skip();
	for (uint32_t i = 0; i < HOGS; i++)
		arena_hog(&hog[i], i * 32768);
	sleep_ms(200);

	uint32_t lba = SCRATCH(4);
	uint8_t data[4096], cdb[10] = { 0x2a }, h[BHS];
	memset(data, 0xab, sizeof(data));
	put32(cdb + 2, lba);
	cdb[8] = 8;
	cmd_header(&a, h, cdb, 10, true, sizeof(data), 0x9200);
	a.cmdsn++;
	put24(h + 5, sizeof(data));
	uint8_t pdu[BHS + sizeof(data) + 4];
	memcpy(pdu, h, BHS);
	memcpy(pdu + BHS, data, sizeof(data));
	uint32_t crc = crc32c(data, sizeof(data));
	memcpy(pdu + BHS + sizeof(data), &crc, 4);
	assert_int_equal(send_all(a.fd, pdu, sizeof(pdu) - 4), 0);  /* all but the digest */
	sleep_ms(200);
	sess_close(&hog[0]);                           /* frees 16 MiB */
	sleep_ms(300);
	assert_int_equal(send_all(a.fd, pdu + sizeof(pdu) - 4, 4), 0);
	struct pdu r;
	for (;;) {                                     /* an R2T would be for data already sent */
		assert_int_equal(recv_pdu(&a, &r, IO_MS), R_PDU);
		unsigned op = r.h[0] & 0x3f;
		uint8_t status = r.h[3];
		pdu_free(&r);
		if (op == OP_SCSI_RSP) {
			assert_int_equal(status, 0);
			break;
		}
	}
	for (uint32_t i = 1; i < HOGS; i++)
		sess_close(&hog[i]);
	uint8_t back[4096];
	rw_ok(&a, false, lba, 8, back);
	assert_memory_equal(back, data, sizeof(data));
	logout(&a);
	healthy();
}

/* Resident memory of the server process in KiB (0 if unknown). */
static long server_rss_kib(void)
{
	char path[64], line[256];
	long kib = 0;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)srv_pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* An initiator that pipelines large NOP-Outs and never reads the echoes:
 * the target stops reading it once a few MiB of replies are queued, so its
 * memory does not grow with what the initiator sends, and other sessions
 * keep working. */
static void unread_replies_do_not_pile_up(void **state)
{
	(void)state;
	need_server();
	if (external)
		skip();
	static const char *const keys[] = { "MaxRecvDataSegmentLength=16777215", NULL };
	struct sess s;
	login_ok(&s, &(struct login_opts){ .keys = keys });
	int small = 4096;
	setsockopt(s.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	enum { PING = 256 * 1024, PINGS = 400 };      /* 100 MiB in all */
	uint8_t *data = calloc(1, PING);
	assert_non_null(data);
	long before = server_rss_kib();
	unsigned sent = 0;
	/* A ping the target has not taken in 1 s: it stopped reading (one
	 * that read on, piling up its replies, takes each in milliseconds). */
	send_limit_ms = 1000;
	for (; sent < PINGS; sent++) {
		uint8_t h[BHS] = { IMMEDIATE | OP_NOP_OUT, 0x80 };
		put32(h + 16, 0x7000 + sent);             /* ITT: wants an echo */
		put32(h + 20, NO_TAG);
		put32(h + 24, s.cmdsn);
		put32(h + 28, s.expstatsn);
		if (send_pdu(&s, h, data, PING, 0))
			break;                             /* the target stopped reading */
	}
	send_limit_ms = 5000;
	sleep_ms(200);
	long after = server_rss_kib();
	printf("# %u pings of 256 KiB sent before the target stopped reading; server RSS %ld -> %ld KiB\n",
	       sent, before, after);
	assert_true(sent < PINGS);
	if (before && after)
		assert_true(after - before < 64 * 1024);
	free(data);
	sess_close(&s);
	healthy();
}

static void persistent_reservation_across_two_sessions(void **state)
{
	(void)state;
	need_server();
	struct sess a, b;
	login_ok(&a, &(struct login_opts){ .initiator = "iqn.2026-11.org.hbakit.test:pr-a" });
	login_ok(&b, &(struct login_opts){ .initiator = "iqn.2026-11.org.hbakit.test:pr-b" });
	tur_ok(&a);
	tur_ok(&b);
	uint32_t lba = SCRATCH(9);
	uint8_t buf[4096];
	tl_fill(buf, lba, 8, BS, 0x900);
	struct result r;
	struct { struct sess *s; uint8_t sa, type; uint64_t key, sakey; int want; } steps[] = {
		{ &a, 0x00, 0, 0, 0xaaaa, 0 },       /* REGISTER a */
		{ &b, 0x00, 0, 0, 0xbbbb, 0 },       /* REGISTER b */
		{ &a, 0x01, 1, 0xaaaa, 0, 0 },       /* RESERVE, WRITE EXCLUSIVE */
	};
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		uint8_t cdb[10] = { 0x5f, steps[i].sa, steps[i].type, 0, 0, 0, 0, 0, 24, 0 };
		uint8_t param[24] = { 0 };
		for (int k = 0; k < 8; k++) {
			param[k] = (uint8_t)(steps[i].key >> (56 - 8 * k));
			param[8 + k] = (uint8_t)(steps[i].sakey >> (56 - 8 * k));
		}
		for (int t = 0; t < 3; t++) {
			scsi_cmd(steps[i].s, cdb, 10, true, param, 24, F_NONE, &r);
			if (!(r.out == OUT_RESPONSE && r.status == 2 && r.sense_key == 6))
				break;
		}
		expect_good(&r, "PERSISTENT RESERVE OUT");
	}
	/* b may read but not write; a may write. */
	for (int t = 0; t < 3; t++) {
		rw10(&b, true, lba, 8, buf, F_NONE, &r);
		if (!(r.out == OUT_RESPONSE && r.status == 2 && r.sense_key == 6))
			break;
	}
	assert_int_equal(r.out, OUT_RESPONSE);
	assert_int_equal(r.status, 0x18);   /* RESERVATION CONFLICT */
	rw_ok(&b, false, lba, 8, buf);
	write_verify(&a, lba, 8, 0x901);
	/* b sees a's reservation. */
	uint8_t in[64] = { 0 };
	uint8_t rr[10] = { 0x5e, 0x01, 0, 0, 0, 0, 0, 0, sizeof(in), 0 };
	for (int t = 0; t < 3; t++) {
		scsi_cmd(&b, rr, 10, false, in, sizeof(in), F_NONE, &r);
		if (!(r.out == OUT_RESPONSE && r.status == 2 && r.sense_key == 6))
			break;
	}
	expect_good(&r, "PERSISTENT RESERVE IN, READ RESERVATION");
	assert_int_equal(get32(in + 4), 16);
	assert_int_equal(get32(in + 8) | get32(in + 12), 0xaaaa);
	assert_int_equal(in[21] & 0x0f, 1);
	/* a releases; both unregister; b writes. */
	struct { struct sess *s; uint8_t sa, type; uint64_t key, sakey; } undo[] = {
		{ &a, 0x02, 1, 0xaaaa, 0 }, { &a, 0x00, 0, 0xaaaa, 0 }, { &b, 0x00, 0, 0xbbbb, 0 },
	};
	for (size_t i = 0; i < sizeof(undo) / sizeof(undo[0]); i++) {
		uint8_t cdb[10] = { 0x5f, undo[i].sa, undo[i].type, 0, 0, 0, 0, 0, 24, 0 };
		uint8_t param[24] = { 0 };
		for (int k = 0; k < 8; k++)
			param[k] = (uint8_t)(undo[i].key >> (56 - 8 * k));
		for (int t = 0; t < 3; t++) {
			scsi_cmd(undo[i].s, cdb, 10, true, param, 24, F_NONE, &r);
			if (!(r.out == OUT_RESPONSE && r.status == 2 && r.sense_key == 6))
				break;
		}
		expect_good(&r, "PERSISTENT RESERVE OUT (release, unregister)");
	}
	write_verify(&b, lba, 8, 0x902);
	logout(&a);
	logout(&b);
	healthy();
}

/* ABORT TASK SET while a write's R2T is outstanding (RFC 7143 4.2.3.3):
 * the TMF Response waits for the Data-Out that R2T asked for, the write
 * does not run and sends no SCSI Response, and the session goes on. */
static void abort_task_set_waits_for_solicited_data(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	const char *r2t[] = { "InitialR2T=Yes", "ImmediateData=No", NULL };
	uint32_t lba = SCRATCH(10);
	login_ok(&s, NULL);
	write_verify(&s, lba, 8, 0xa00);
	logout(&s);

	login_ok(&s, &(struct login_opts){ .keys = r2t });
	assert_true(s.send_mrdsl >= 8 * BS);
	uint8_t w[8 * BS];
	tl_fill(w, lba, 8, BS, 0xa01);
	uint8_t cdb[10] = { 0x2a, 0, (uint8_t)(lba >> 24), (uint8_t)(lba >> 16), (uint8_t)(lba >> 8),
			    (uint8_t)lba, 0, 0, 8, 0 };
	uint8_t h[BHS];
	uint32_t itt = s.itt++;
	cmd_header(&s, h, cdb, sizeof(cdb), true, sizeof(w), itt);
	s.cmdsn++;
	assert_int_equal(send_pdu(&s, h, NULL, 0, 0), 0);
	struct pdu p;
	assert_int_equal(recv_pdu(&s, &p, IO_MS), R_PDU);
	assert_int_equal(p.h[0] & 0x3f, OP_R2T);
	uint32_t ttt = get32(p.h + 20), off = get32(p.h + 40), len = get32(p.h + 44);
	pdu_free(&p);
	assert_int_equal(off, 0);
	assert_int_equal(len, sizeof(w));

	uint32_t tm_itt = s.itt++;
	send_tmf(&s, ABORT_TASK_SET, true, tm_itt, NO_TAG, s.cmdsn, 0);
	int rc = recv_pdu(&s, &p, 300);
	if (rc == R_PDU) {
		unsigned op = p.h[0] & 0x3f;
		pdu_free(&p);
		fail_msg("opcode 0x%02x came before the Data-Out the R2T asked for", op);
	}
	assert_int_equal(rc, R_TIMEOUT);

	assert_int_equal(send_dataout(&s, itt, ttt, 0, 0, w, len, true, 0), 0);
	assert_int_equal(recv_pdu(&s, &p, IO_MS), R_PDU);
	assert_int_equal(p.h[0] & 0x3f, OP_TMF_RSP);
	assert_int_equal(get32(p.h + 16), tm_itt);
	assert_int_equal(p.h[2], 0);                     /* function complete */
	pdu_free(&p);
	assert_int_equal(recv_pdu(&s, &p, 300), R_TIMEOUT);   /* nothing for the write */
	tur_ok(&s);
	assert_true(holds(&s, lba, 8, 0xa00));

	/* Again, but the initiator goes away instead of sending the data: the
	 * connection's end ends the function, and the target goes on. */
	itt = s.itt++;
	cmd_header(&s, h, cdb, sizeof(cdb), true, sizeof(w), itt);
	s.cmdsn++;
	assert_int_equal(send_pdu(&s, h, NULL, 0, 0), 0);
	assert_int_equal(recv_pdu(&s, &p, IO_MS), R_PDU);
	assert_int_equal(p.h[0] & 0x3f, OP_R2T);
	pdu_free(&p);
	send_tmf(&s, ABORT_TASK_SET, true, s.itt++, NO_TAG, s.cmdsn, 0);
	sess_close(&s);
	login_ok(&s, NULL);
	assert_true(holds(&s, lba, 8, 0xa00));
	logout(&s);
	healthy();
}

/* ABORT TASK and LOGICAL UNIT RESET of a write whose R2T is half answered:
 * the function completes at once (the write never reached the LUN), the
 * rest of the R2T's Data-Out is dropped quietly, nothing answers the
 * write, and the session goes on with the blocks unchanged. */
static void write_aborted_mid_r2t(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	const char *r2t[] = { "InitialR2T=Yes", "ImmediateData=No", "MaxBurstLength=16384", NULL };
	uint32_t lba = SCRATCH(27);
	enum { BLOCKS = 64 };
	login_ok(&s, NULL);
	write_verify(&s, lba, BLOCKS, 0x1b00);
	logout(&s);
	login_ok(&s, &(struct login_opts){ .keys = r2t });
	tur_ok(&s);
	static uint8_t w[BLOCKS * BS];
	tl_fill(w, lba, BLOCKS, BS, 0x1b01);
	static const uint8_t functions[] = { 1, 5 };      /* ABORT TASK, LOGICAL UNIT RESET */
	for (unsigned i = 0; i < sizeof(functions); i++) {
		uint8_t cdb[10] = { 0x2a, 0, (uint8_t)(lba >> 24), (uint8_t)(lba >> 16), (uint8_t)(lba >> 8),
				    (uint8_t)lba, 0, 0, BLOCKS, 0 };
		uint8_t h[BHS];
		uint32_t itt = s.itt++, sn = s.cmdsn++;
		cmd_header(&s, h, cdb, sizeof(cdb), true, sizeof(w), itt);
		put32(h + 24, sn);
		assert_int_equal(send_pdu(&s, h, NULL, 0, 0), 0);
		struct pdu p;
		assert_int_equal(recv_pdu(&s, &p, IO_MS), R_PDU);
		assert_int_equal(p.h[0] & 0x3f, OP_R2T);
		uint32_t ttt = get32(p.h + 20), len = get32(p.h + 44);
		pdu_free(&p);
		assert_true(len > 4096 && len <= s.send_mrdsl);
		assert_int_equal(send_dataout(&s, itt, ttt, 0, 0, w, 4096, false, 0), 0);

		uint32_t tm_itt = s.itt++;
		send_tmf(&s, functions[i], true, tm_itt, functions[i] == ABORT_TASK ? itt : NO_TAG, s.cmdsn,
			 sn);
		assert_int_equal(recv_pdu(&s, &p, IO_MS), R_PDU);
		assert_int_equal(p.h[0] & 0x3f, OP_TMF_RSP);
		assert_int_equal(get32(p.h + 16), tm_itt);
		assert_int_equal(p.h[2], 0);                    /* function complete */
		pdu_free(&p);

		/* The rest of what the R2T asked for, as an initiator that had
		 * it on the wire already sends it. */
		assert_int_equal(send_dataout(&s, itt, ttt, 1, 4096, w + 4096, len - 4096, true, 0), 0);
		tur_ok(&s);
		int rc = recv_pdu(&s, &p, QUIET_MS);
		if (rc == R_PDU) {
			unsigned op = p.h[0] & 0x3f;
			pdu_free(&p);
			fail_msg("function %u: opcode 0x%02x came for the aborted write", functions[i], op);
		}
		assert_int_equal(rc, R_TIMEOUT);
		assert_true(holds(&s, lba, BLOCKS, 0x1b00));
	}
	logout(&s);
	healthy();
}

/* A non-immediate PDU with CmdSN n + 1 for a session whose CmdSN n is
 * missing: nothing may answer it while the gap is open. */
static void quiet_while_the_gap_is_open(struct sess *s, uint32_t n, const char *what)
{
	struct pdu p;
	int rc = recv_pdu(s, &p, QUIET_MS);
	if (rc == R_PDU) {
		unsigned op = p.h[0] & 0x3f;
		pdu_free(&p);
		fail_msg("opcode 0x%02x came for %s while CmdSN %u was missing", op, what, n);
	}
	assert_int_equal(rc, R_TIMEOUT);
}

/* RFC 7143 4.2.2.1: a non-immediate ABORT TASK SET that arrives ahead of
 * a CmdSN gap waits for the gap, then runs in CmdSN order: after the
 * WRITE N that fills the gap (which it aborts, once the Data-Out that
 * write's R2T asked for is in) and before the WRITE N + 2 that was held
 * behind it (which it leaves alone). */
static void task_management_ahead_of_a_gap_waits(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	const char *r2t[] = { "InitialR2T=Yes", "ImmediateData=No", NULL };
	uint32_t lba = SCRATCH(28), lba2 = SCRATCH(28) + 64;
	login_ok(&s, NULL);
	write_verify(&s, lba, 8, 0x2800);
	write_verify(&s, lba2, 8, 0x2810);
	logout(&s);
	login_ok(&s, &(struct login_opts){ .keys = r2t });
	tur_ok(&s);
	uint8_t w[8 * BS], w2[8 * BS];
	tl_fill(w, lba, 8, BS, 0x2801);
	tl_fill(w2, lba2, 8, BS, 0x2811);
	uint32_t n = s.cmdsn, itt = s.itt++, tm_itt = s.itt++, itt2 = s.itt++;

	send_tmf(&s, ABORT_TASK_SET, false, tm_itt, NO_TAG, n + 1, 0);
	quiet_while_the_gap_is_open(&s, n, "the task management request");

	uint8_t cdb2[10] = { 0x2a, 0, (uint8_t)(lba2 >> 24), (uint8_t)(lba2 >> 16),
			     (uint8_t)(lba2 >> 8), (uint8_t)lba2, 0, 0, 8, 0 };
	uint8_t h[BHS];
	cmd_header(&s, h, cdb2, sizeof(cdb2), true, sizeof(w2), itt2);
	put32(h + 24, n + 2);
	assert_int_equal(send_pdu(&s, h, NULL, 0, 0), 0);
	quiet_while_the_gap_is_open(&s, n, "a write after the task management request");

	/* CmdSN N fills the gap. */
	uint8_t cdb[10] = { 0x2a, 0, (uint8_t)(lba >> 24), (uint8_t)(lba >> 16), (uint8_t)(lba >> 8),
			    (uint8_t)lba, 0, 0, 8, 0 };
	cmd_header(&s, h, cdb, sizeof(cdb), true, sizeof(w), itt);
	put32(h + 24, n);
	assert_int_equal(send_pdu(&s, h, NULL, 0, 0), 0);
	s.cmdsn = n + 3;
	bool r2t_sent = false, tmf_done = false, write2_done = false;
	while (!tmf_done || !write2_done) {
		struct pdu p;
		int rc = recv_pdu(&s, &p, IO_MS);
		if (rc != R_PDU)
			fail_msg("%s after the gap filled (TMF Response %s, WRITE N + 2 %s)",
				 rc == R_TIMEOUT ? "nothing" : "the connection ended",
				 tmf_done ? "came" : "missing", write2_done ? "done" : "missing");
		unsigned op = p.h[0] & 0x3f;
		uint32_t t = get32(p.h + 16);
		if (op == OP_R2T && (t == itt || t == itt2)) {
			uint32_t ttt = get32(p.h + 20), off = get32(p.h + 40), len = get32(p.h + 44);
			assert_int_equal(off, 0);
			assert_int_equal(len, sizeof(w));
			if (t == itt) {
				/* The function waits for what the R2T asked for. */
				assert_false(tmf_done);
				r2t_sent = true;
			}
			assert_int_equal(send_dataout(&s, t, ttt, 0, 0, t == itt ? w : w2, len, true, 0), 0);
		} else if (op == OP_TMF_RSP && t == tm_itt) {
			if (!r2t_sent)
				fail_msg("the TMF Response came before the R2T of WRITE N, which came "
					 "before it in CmdSN order");
			assert_int_equal(p.h[2], 0);              /* function complete */
			/* Every CmdSN up to the WRITE N + 2 was received. */
			assert_int_equal(get32(p.h + 28), n + 3);
			tmf_done = true;
		} else if (op == OP_SCSI_RSP && t == itt2) {
			assert_int_equal(p.h[2], 0);
			assert_int_equal(p.h[3], 0);
			write2_done = true;
		} else {
			fail_msg("opcode 0x%02x for task 0x%x (WRITE N 0x%x, TMF 0x%x, WRITE N + 2 0x%x)",
				 op, t, itt, tm_itt, itt2);
		}
		pdu_free(&p);
	}
	struct pdu p;
	int rc = recv_pdu(&s, &p, QUIET_MS);
	if (rc == R_PDU) {
		unsigned op = p.h[0] & 0x3f;
		pdu_free(&p);
		fail_msg("opcode 0x%02x came for the aborted WRITE N", op);
	}
	assert_int_equal(rc, R_TIMEOUT);
	assert_true(holds(&s, lba, 8, 0x2800));           /* WRITE N was aborted */
	assert_true(holds(&s, lba2, 8, 0x2811));          /* WRITE N + 2 ran */
	logout(&s);
	healthy();
}

/* RFC 7143 4.2.2.1: non-immediate NOP-Out, Text and Logout Requests that
 * arrive ahead of a CmdSN gap wait for it and are then answered in CmdSN
 * order, after the NOP-Out that fills the gap. */
static void requests_ahead_of_a_gap_wait(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	login_ok(&s, NULL);
	tur_ok(&s);
	uint32_t n = s.cmdsn, base = s.itt;
	s.itt += 5;
	static const char ping[] = "ping ahead";
	static const char text[] = "SendTargets=All";
	uint8_t nop[BHS] = { OP_NOP_OUT, 0x80 }, txt[BHS] = { OP_TEXT, 0x80 };
	uint8_t lo[BHS] = { OP_LOGOUT, 0x80 };
	put32(nop + 16, base + 1);
	put32(nop + 20, NO_TAG);
	put32(nop + 24, n + 1);
	put32(nop + 28, s.expstatsn);
	assert_int_equal(send_pdu(&s, nop, ping, sizeof(ping), 0), 0);
	put32(txt + 16, base + 2);
	put32(txt + 20, NO_TAG);
	put32(txt + 24, n + 2);
	put32(txt + 28, s.expstatsn);
	assert_int_equal(send_pdu(&s, txt, text, sizeof(text), 0), 0);
	put32(lo + 16, base + 3);
	put32(lo + 24, n + 3);
	put32(lo + 28, s.expstatsn);
	assert_int_equal(send_pdu(&s, lo, NULL, 0, 0), 0);
	quiet_while_the_gap_is_open(&s, n, "a NOP-Out, Text or Logout Request");

	/* An immediate NOP-Out is answered at once, gap or not. */
	uint8_t inop[BHS] = { IMMEDIATE | OP_NOP_OUT, 0x80 };
	put32(inop + 16, base + 4);
	put32(inop + 20, NO_TAG);
	put32(inop + 24, n);
	put32(inop + 28, s.expstatsn);
	assert_int_equal(send_pdu(&s, inop, NULL, 0, 0), 0);
	struct pdu q;
	assert_int_equal(recv_pdu(&s, &q, IO_MS), R_PDU);
	assert_int_equal(q.h[0] & 0x3f, OP_NOP_IN);
	assert_int_equal(get32(q.h + 16), base + 4);
	pdu_free(&q);

	/* CmdSN N fills the gap. */
	put32(nop + 16, base);
	put32(nop + 24, n);
	assert_int_equal(send_pdu(&s, nop, NULL, 0, 0), 0);
	static const struct { unsigned op; const char *name; } want[] = {
		{ OP_NOP_IN, "NOP-In" }, { OP_NOP_IN, "NOP-In" }, { OP_TEXT_RSP, "Text Response" },
		{ OP_LOGOUT_RSP, "Logout Response" },
	};
	for (unsigned i = 0; i < 4; i++) {
		struct pdu p;
		int rc = recv_pdu(&s, &p, IO_MS);
		if (rc != R_PDU)
			fail_msg("no %s for CmdSN %u (%d)", want[i].name, n + i, rc);
		unsigned op = p.h[0] & 0x3f;
		uint32_t t = get32(p.h + 16);
		if (op != want[i].op || t != base + i)
			fail_msg("opcode 0x%02x for task 0x%x, expected the %s for CmdSN %u (task 0x%x)",
				 op, t, want[i].name, n + i, base + i);
		if (i == 1 && (p.dlen != sizeof(ping) || memcmp(p.data, ping, sizeof(ping))))
			fail_msg("the NOP-In for CmdSN %u does not echo its ping", n + 1);
		if (i == 2 && (!p.dlen || !strstr((const char *)p.data, "TargetName=")))
			fail_msg("the Text Response names no target");
		if (i == 3)
			assert_int_equal(p.h[2], 0);
		pdu_free(&p);
	}
	sess_close(&s);
	healthy();
}

/* Requests held ahead of a CmdSN gap keep their data within the 4 MiB a
 * connection keeps aside: NOP-Outs of MaxRecvDataSegmentLength bytes each
 * are held until that is full, the next one is rejected (out of
 * resources), and a connection that ends with them held frees them. */
static void held_requests_keep_bounded_data_aside(void **state)
{
	(void)state;
	need_server();
	if (external)
		skip();                 /* the bound is this target's */
	struct sess s;
	login_ok(&s, NULL);
	tur_ok(&s);
	uint32_t len = s.send_mrdsl, fits = (4u << 20) / len, n = s.cmdsn;
	if (fits + 2 > s.maxcmdsn - n)
		skip();
	uint8_t *ping = malloc(len);
	assert_non_null(ping);
	memset(ping, 0x5a, len);
	uint8_t nop[BHS] = { OP_NOP_OUT, 0x80 };
	put32(nop + 20, NO_TAG);
	put32(nop + 28, s.expstatsn);
	uint32_t last = 0;
	for (uint32_t i = 0; i <= fits; i++) {
		last = s.itt++;
		put32(nop + 16, last);
		put32(nop + 24, n + 1 + i);
		assert_int_equal(send_pdu(&s, nop, ping, len, 0), 0);
	}
	free(ping);
	struct pdu p;
	int rc = recv_pdu(&s, &p, IO_MS);
	if (rc != R_PDU)
		fail_msg("no answer to the NOP-Out %u bytes of held data did not leave room for (%d)",
			 fits * len, rc);
	assert_int_equal(p.h[0] & 0x3f, OP_REJECT);
	assert_int_equal(p.h[2], 0x0a);
	assert_true(p.dlen >= BHS);
	assert_int_equal(get32(p.data + 16), last);
	pdu_free(&p);
	quiet_while_the_gap_is_open(&s, n, "the held NOP-Outs");
	sess_close(&s);
	healthy();
}

static void session_goes_on(struct sess *s, uint32_t lba, uint16_t blocks, uint32_t seed);

/* Sends the header of a WRITE(10) of 8 blocks at lba with CmdSN cmdsn and
 * all its data immediate, but only the first 1000 bytes of that data, and
 * gives the target the time to read them: the command is not received
 * until the rest comes. */
static void write_imm_partly(struct sess *s, uint32_t itt, uint32_t cmdsn, uint32_t lba,
			     const uint8_t *buf)
{
	uint8_t cdb[10] = { 0x2a, 0, (uint8_t)(lba >> 24), (uint8_t)(lba >> 16), (uint8_t)(lba >> 8),
			    (uint8_t)lba, 0, 0, 8, 0 };
	uint8_t h[BHS];
	assert_true(!s->hdigest && !s->ddigest && s->immediate_data && s->first_burst >= 8 * BS &&
		    s->send_mrdsl >= 8 * BS);
	cmd_header(s, h, cdb, sizeof(cdb), true, 8 * BS, itt);
	put32(h + 24, cmdsn);
	put24(h + 5, 8 * BS);
	assert_int_equal(send_all(s->fd, h, BHS), 0);
	assert_int_equal(send_all(s->fd, buf, 1000), 0);
}

/* A command that fills a CmdSN gap is received only once its immediate
 * data is all in: a task management request and a write held behind the
 * gap wait until then, and the request, run after it in CmdSN order,
 * finds the write as a whole (here: an ABORT TASK SET, which dropped the
 * task its data was being read into). */
static void held_requests_wait_for_the_command_being_read(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	uint32_t lba = SCRATCH(29) + 512, lba2 = SCRATCH(29) + 576;
	login_ok(&s, NULL);
	write_verify(&s, lba, 8, 0x3000);
	write_verify(&s, lba2, 8, 0x3010);
	uint8_t w[8 * BS], w2[8 * BS];
	tl_fill(w, lba, 8, BS, 0x3001);
	tl_fill(w2, lba2, 8, BS, 0x3011);
	uint32_t n = s.cmdsn, itt = s.itt++, tm_itt = s.itt++, itt2 = s.itt++;

	send_tmf(&s, ABORT_TASK_SET, false, tm_itt, NO_TAG, n + 1, 0);
	write_imm(&s, itt2, n + 2, lba2, 8, w2);
	quiet_while_the_gap_is_open(&s, n, "the requests after it");
	write_imm_partly(&s, itt, n, lba, w);
	quiet_while_the_gap_is_open(&s, n, "the requests after a command still being read");
	assert_int_equal(send_all(s.fd, w + 1000, sizeof(w) - 1000), 0);
	s.cmdsn = n + 3;
	/* WRITE N, if the function found it done, answers before it; the
	 * function answers; WRITE N + 2, after it, is left alone. */
	bool tmf_done = false, write2_done = false;
	while (!tmf_done || !write2_done) {
		struct pdu p;
		int rc = recv_pdu(&s, &p, IO_MS);
		if (rc != R_PDU)
			fail_msg("%s after the command came whole (TMF Response %s, WRITE N + 2 %s)",
				 rc == R_TIMEOUT ? "nothing" : "the connection ended",
				 tmf_done ? "came" : "missing", write2_done ? "done" : "missing");
		unsigned op = p.h[0] & 0x3f;
		uint32_t t = get32(p.h + 16);
		if (op == OP_SCSI_RSP && t == itt) {
			assert_false(tmf_done);
			assert_int_equal(p.h[3], 0);
		} else if (op == OP_TMF_RSP && t == tm_itt) {
			assert_int_equal(p.h[2], 0);              /* function complete */
			tmf_done = true;
		} else if (op == OP_SCSI_RSP && t == itt2) {
			assert_int_equal(p.h[3], 0);
			write2_done = true;
		} else {
			fail_msg("opcode 0x%02x for task 0x%x (WRITE N 0x%x, TMF 0x%x, WRITE N + 2 0x%x)",
				 op, t, itt, tm_itt, itt2);
		}
		pdu_free(&p);
	}
	assert_true(holds(&s, lba2, 8, 0x3011));
	logout(&s);
	healthy();
}

/* A write held behind a gap waits for the command that fills it until that
 * command's immediate data is all in: nothing answers before. */
static void held_write_waits_for_the_command_being_read(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	uint32_t lba = SCRATCH(29) + 1024, lba2 = SCRATCH(29) + 1088;
	login_ok(&s, NULL);
	tur_ok(&s);
	uint8_t w[8 * BS], w2[8 * BS];
	tl_fill(w, lba, 8, BS, 0x3101);
	tl_fill(w2, lba2, 8, BS, 0x3111);
	uint32_t n = s.cmdsn, itt = s.itt++, itt2 = s.itt++;
	write_imm(&s, itt2, n + 1, lba2, 8, w2);
	quiet_while_the_gap_is_open(&s, n, "the write after it");
	write_imm_partly(&s, itt, n, lba, w);
	quiet_while_the_gap_is_open(&s, n, "the write after a command still being read");
	assert_int_equal(send_all(s.fd, w + 1000, sizeof(w) - 1000), 0);
	s.cmdsn = n + 2;
	for (unsigned done = 0; done != 3;) {
		struct pdu p;
		if (recv_pdu(&s, &p, IO_MS) != R_PDU)
			fail_msg("the writes did not both answer");
		uint32_t t = get32(p.h + 16);
		assert_int_equal(p.h[0] & 0x3f, OP_SCSI_RSP);
		assert_int_equal(p.h[3], 0);
		assert_true(t == itt || t == itt2);
		done |= t == itt ? 1u : 2u;
		pdu_free(&p);
	}
	assert_true(holds(&s, lba, 8, 0x3101));
	assert_true(holds(&s, lba2, 8, 0x3111));
	logout(&s);
	healthy();
}

/* A non-immediate ABORT TASK of a command not received yet, whose CmdSN
 * lies in the gap before the request's own, does not wait for it: it
 * fills the gap (RFC 7143 11.5.1 b) and completes at once; the command,
 * should it come after all, is ignored. */
static void abort_of_a_lost_command_fills_the_gap(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	uint32_t lba = SCRATCH(29) + 1536;
	login_ok(&s, NULL);
	write_verify(&s, lba, 8, 0x3200);
	uint8_t w[8 * BS];
	tl_fill(w, lba, 8, BS, 0x3201);
	uint32_t n = s.cmdsn, lost = s.itt++, tm_itt = s.itt++;
	send_tmf(&s, ABORT_TASK, false, tm_itt, lost, n + 1, n);   /* RefCmdSN: the one missing */
	struct pdu p;
	int rc = recv_pdu(&s, &p, REFUSE_MS);
	if (rc != R_PDU)
		fail_msg("ABORT TASK of the missing command: %s", rc == R_TIMEOUT ? "no answer" :
			 "the connection ended");
	assert_int_equal(p.h[0] & 0x3f, OP_TMF_RSP);
	assert_int_equal(p.h[2], 0);                        /* function complete */
	assert_int_equal(get32(p.h + 28), n + 2);           /* both CmdSNs received */
	pdu_free(&p);
	write_imm(&s, lost, n, lba, 8, w);
	s.cmdsn = n + 2;
	session_goes_on(&s, lba, 8, 0x3200);
}

/* ---- Data-Out of commands that never became tasks ---------------------------- */

static const char *const unsol_keys[] = { "InitialR2T=No", "ImmediateData=No",
					  "FirstBurstLength=65536", NULL };

/* Logs in with InitialR2T=No, ImmediateData=No after filling blocks at lba
 * with the pattern of seed through a session of its own. */
static void unsol_session(struct sess *s, uint32_t lba, uint16_t blocks, uint32_t seed)
{
	login_ok(s, NULL);
	write_verify(s, lba, blocks, seed);
	logout(s);
	login_ok(s, &(struct login_opts){ .keys = unsol_keys });
	if (s->initial_r2t || s->immediate_data)
		fail_msg("the target did not agree to InitialR2T=No ImmediateData=No");
	tur_ok(s);
}

/* Sends a WRITE(10) of blocks at lba without F (unsolicited Data-Out
 * follows) and with CmdSN cmdsn, then all its data as one unsolicited
 * Data-Out.  imm: an immediate command. */
static void unsol_write(struct sess *s, uint32_t itt, uint32_t cmdsn, bool imm, uint32_t lba,
			uint16_t blocks, const uint8_t *buf)
{
	uint8_t cdb[10] = { 0x2a, 0, (uint8_t)(lba >> 24), (uint8_t)(lba >> 16), (uint8_t)(lba >> 8),
			    (uint8_t)lba, 0, (uint8_t)(blocks >> 8), (uint8_t)blocks, 0 };
	uint32_t len = (uint32_t)blocks * BS;
	assert_true(len <= s->first_burst && len <= s->send_mrdsl);
	uint8_t h[BHS];
	cmd_header(s, h, cdb, sizeof(cdb), true, len, itt);
	h[1] &= (uint8_t)~0x80;
	if (imm)
		h[0] |= IMMEDIATE;
	put32(h + 24, cmdsn);
	assert_int_equal(send_pdu(s, h, NULL, 0, 0), 0);
	assert_int_equal(send_dataout(s, itt, NO_TAG, 0, 0, buf, len, true, 0), 0);
}

/* The session goes on after Data-Out the target had to drop: TEST UNIT
 * READY answers, nothing comes for the dropped command, and the blocks at
 * lba still hold the pattern of seed. */
static void session_goes_on(struct sess *s, uint32_t lba, uint16_t blocks, uint32_t seed)
{
	tur_ok(s);
	struct pdu p;
	int rc = recv_pdu(s, &p, QUIET_MS);
	if (rc == R_PDU) {
		unsigned op = p.h[0] & 0x3f;
		pdu_free(&p);
		fail_msg("opcode 0x%02x came for a command the target did not take", op);
	}
	assert_int_equal(rc, R_TIMEOUT);
	assert_true(holds(s, lba, blocks, seed));
	logout(s);
	healthy();
}

/* ABORT TASK of a write not received yet (RFC 7143 11.5.1) completes; the
 * write, when it comes, is ignored, and so is its unsolicited Data-Out. */
static void pre_aborted_write_drops_its_data_out(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	uint32_t lba = SCRATCH(14);
	unsol_session(&s, lba, 8, 0xe00);
	uint8_t w[8 * BS];
	tl_fill(w, lba, 8, BS, 0xe01);
	uint32_t itt = s.itt++, sn = s.cmdsn++;

	uint32_t tm_itt = s.itt++;
	send_tmf(&s, ABORT_TASK, true, tm_itt, itt, s.cmdsn, sn);
	struct pdu p;
	assert_int_equal(recv_pdu(&s, &p, IO_MS), R_PDU);
	assert_int_equal(p.h[0] & 0x3f, OP_TMF_RSP);
	assert_int_equal(get32(p.h + 16), tm_itt);
	assert_int_equal(p.h[2], 0);                        /* function complete */
	pdu_free(&p);

	unsol_write(&s, itt, sn, false, lba, 8, w);
	session_goes_on(&s, lba, 8, 0xe00);
}

/* A write without F whose immediate data is already all it may send
 * unsolicited (all of its Expected Data Transfer Length, or all of
 * FirstBurstLength) announces Data-Out that cannot come: Reject (protocol
 * error) at once, the write not run, the session going on. */
static void write_announcing_impossible_data_out_is_rejected(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	uint32_t lba = SCRATCH(26);
	enum { BLOCKS = 256 };
	login_ok(&s, NULL);
	write_verify(&s, lba, BLOCKS, 0x1a00);
	if (s.initial_r2t || !s.immediate_data || s.send_mrdsl < s.first_burst ||
	    s.first_burst >= BLOCKS * BS)
		fail_msg("the target did not agree to InitialR2T=No ImmediateData=Yes with a "
			 "FirstBurstLength below %u", BLOCKS * BS);
	static uint8_t w[BLOCKS * BS];
	tl_fill(w, lba, BLOCKS, BS, 0x1a01);
	/* All of the data immediate, then all of the first burst. */
	const uint32_t lens[2] = { 8 * BS, BLOCKS * BS };
	for (unsigned i = 0; i < 2; i++) {
		uint16_t blocks = (uint16_t)(lens[i] / BS);
		uint32_t imm = lens[i] < s.first_burst ? lens[i] : s.first_burst;
		uint8_t cdb[10] = { 0x2a, 0, (uint8_t)(lba >> 24), (uint8_t)(lba >> 16),
				    (uint8_t)(lba >> 8), (uint8_t)lba, 0, (uint8_t)(blocks >> 8),
				    (uint8_t)blocks, 0 };
		uint8_t h[BHS];
		cmd_header(&s, h, cdb, sizeof(cdb), true, lens[i], s.itt++);
		h[1] &= (uint8_t)~0x80;         /* "unsolicited Data-Out follows" */
		s.cmdsn++;
		assert_int_equal(send_pdu(&s, h, w, imm, 0), 0);
		struct pdu p;
		int rc = recv_pdu(&s, &p, REFUSE_MS);
		if (rc != R_PDU)
			fail_msg("write of %u bytes, %u immediate, without F: %s within %d ms",
				 lens[i], imm, rc == R_TIMEOUT ? "no answer" : "connection lost", REFUSE_MS);
		unsigned op = p.h[0] & 0x3f, reason = p.h[2];
		pdu_free(&p);
		if (op != OP_REJECT)
			fail_msg("write of %u bytes, %u immediate, without F: opcode 0x%02x, not a Reject",
				 lens[i], imm, op);
		assert_int_equal(reason, 0x04);         /* protocol error */
		tur_ok(&s);
	}
	session_goes_on(&s, lba, BLOCKS, 0x1a00);
}

/* Those rejected writes leave nothing to drop behind: as many of them as
 * the target remembers dropped ITTs do not push out the ITT of a write it
 * ignored, whose unsolicited Data-Out, sent after them, is still dropped
 * quietly. */
static void impossible_writes_forget_no_dropped_itt(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	uint32_t lba = SCRATCH(29);
	login_ok(&s, NULL);
	write_verify(&s, lba, 8, 0x1b00);
	if (s.initial_r2t || !s.immediate_data || s.first_burst < 8 * BS)
		fail_msg("the target did not agree to InitialR2T=No ImmediateData=Yes");
	uint8_t w[8 * BS];
	tl_fill(w, lba, 8, BS, 0x1b01);
	uint8_t cdb[10] = { 0x2a, 0, (uint8_t)(lba >> 24), (uint8_t)(lba >> 16), (uint8_t)(lba >> 8),
			    (uint8_t)lba, 0, 0, 8, 0 };
	/* Ignored (a CmdSN used already), its Data-Out held back. */
	uint32_t ignored = s.itt++;
	uint8_t h[BHS];
	cmd_header(&s, h, cdb, sizeof(cdb), true, sizeof(w), ignored);
	h[1] &= (uint8_t)~0x80;
	put32(h + 24, s.cmdsn - 1);
	assert_int_equal(send_pdu(&s, h, NULL, 0, 0), 0);
	/* All their data immediate and F clear, one more than the target
	 * remembers (HBK_ISCSI_MAX_DEPTH + HBK_ISCSI_MAX_IMMEDIATE). */
	for (unsigned i = 0; i < 512 + 32 + 1; i++) {
		cmd_header(&s, h, cdb, sizeof(cdb), true, sizeof(w), s.itt++);
		h[1] &= (uint8_t)~0x80;
		s.cmdsn++;
		assert_int_equal(send_pdu(&s, h, w, sizeof(w), 0), 0);
		struct pdu p;
		if (recv_pdu(&s, &p, REFUSE_MS) != R_PDU)
			fail_msg("impossible write %u: no Reject", i);
		unsigned op = p.h[0] & 0x3f;
		pdu_free(&p);
		assert_int_equal(op, OP_REJECT);
	}
	assert_int_equal(send_dataout(&s, ignored, NO_TAG, 0, 0, w, sizeof(w), true, 0), 0);
	session_goes_on(&s, lba, 8, 0x1b00);
}

/* A write with a CmdSN used already, and one far ahead of the window, are
 * ignored, and so is their unsolicited Data-Out. */
static void ignored_write_drops_its_data_out(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	uint32_t lba = SCRATCH(15);
	unsol_session(&s, lba, 8, 0xf00);
	uint8_t w[8 * BS];
	tl_fill(w, lba, 8, BS, 0xf01);
	unsol_write(&s, s.itt++, s.cmdsn - 1, false, lba, 8, w);
	unsol_write(&s, s.itt++, s.cmdsn + 0x40000000u, false, lba, 8, w);
	session_goes_on(&s, lba, 8, 0xf00);
}

/* An immediate write over the limit of outstanding immediate commands is
 * rejected (reason 06), and its unsolicited Data-Out dropped; the writes
 * within the limit complete. */
static void rejected_write_drops_its_data_out(void **state)
{
	(void)state;
	need_server();
	if (external)
		skip();                 /* the limit is this target's */
	struct sess s;
	enum { N = 32 };                /* the target's immediate commands */
	uint32_t lba = SCRATCH(16);
	unsol_session(&s, lba, N + 1, 0x1000);
	uint8_t w[(N + 1) * BS];
	tl_fill(w, lba, N + 1, BS, 0x1001);
	uint8_t cdb[10] = { 0x2a };
	uint8_t h[BHS];
	uint32_t first = s.itt;
	/* N immediate writes of a block each, their data held back. */
	for (unsigned i = 0; i < N; i++) {
		uint32_t b = lba + i;
		cdb[2] = (uint8_t)(b >> 24);
		cdb[3] = (uint8_t)(b >> 16);
		cdb[4] = (uint8_t)(b >> 8);
		cdb[5] = (uint8_t)b;
		cdb[8] = 1;
		cmd_header(&s, h, cdb, sizeof(cdb), true, BS, s.itt++);
		h[0] |= IMMEDIATE;
		h[1] &= (uint8_t)~0x80;
		assert_int_equal(send_pdu(&s, h, NULL, 0, 0), 0);
	}
	uint32_t over = s.itt++;
	unsol_write(&s, over, s.cmdsn, true, lba + N, 1, w + N * BS);
	struct pdu p;
	assert_int_equal(recv_pdu(&s, &p, IO_MS), R_PDU);
	assert_int_equal(p.h[0] & 0x3f, OP_REJECT);
	printf("# immediate write over the limit: Reject reason 0x%02x\n", p.h[2]);
	assert_int_equal(p.h[2], 0x06);
	pdu_free(&p);
	/* The data of the N writes: each answers GOOD. */
	for (unsigned i = 0; i < N; i++)
		assert_int_equal(send_dataout(&s, first + i, NO_TAG, 0, 0, w + i * BS, BS, true, 0), 0);
	for (unsigned i = 0; i < N; i++) {
		assert_int_equal(recv_pdu(&s, &p, IO_MS), R_PDU);
		assert_int_equal(p.h[0] & 0x3f, OP_SCSI_RSP);
		assert_true(get32(p.h + 16) - first < N);
		assert_int_equal(p.h[2], 0);
		assert_int_equal(p.h[3], 0);
		pdu_free(&p);
	}
	assert_true(holds(&s, lba, N, 0x1001));
	session_goes_on(&s, lba + N, 1, 0x1000);
}

/* The late Data-Out of an aborted write is dropped however many writes
 * were dropped after it, as long as their Data-Out came whole: here 600
 * ignored writes (a duplicate CmdSN) with their data come between an
 * ABORT TASK and the aborted write's unsolicited Data-Out. */
static void aborted_write_data_out_after_many_others(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	uint32_t lba = SCRATCH(19);
	unsol_session(&s, lba, 8, 0x1900);
	uint8_t w[8 * BS];
	tl_fill(w, lba, 8, BS, 0x1901);
	uint8_t cdb[10] = { 0x2a, 0, (uint8_t)(lba >> 24), (uint8_t)(lba >> 16), (uint8_t)(lba >> 8),
			    (uint8_t)lba, 0, 0, 8, 0 }, h[BHS];
	uint32_t itt = s.itt++;
	cmd_header(&s, h, cdb, sizeof(cdb), true, sizeof(w), itt);
	h[1] &= (uint8_t)~0x80;                 /* its unsolicited Data-Out is to follow */
	s.cmdsn++;
	assert_int_equal(send_pdu(&s, h, NULL, 0, 0), 0);

	uint32_t tm_itt = s.itt++;
	send_tmf(&s, ABORT_TASK, true, tm_itt, itt, s.cmdsn, s.cmdsn - 1);
	struct pdu p;
	assert_int_equal(recv_pdu(&s, &p, IO_MS), R_PDU);
	assert_int_equal(p.h[0] & 0x3f, OP_TMF_RSP);
	assert_int_equal(p.h[2], 0);
	pdu_free(&p);

	for (unsigned i = 0; i < 600; i++)
		unsol_write(&s, s.itt++, s.cmdsn - 1, false, lba, 8, w);
	assert_int_equal(send_dataout(&s, itt, NO_TAG, 0, 0, w, sizeof(w), true, 0), 0);
	session_goes_on(&s, lba, 8, 0x1900);
}

/* A write that reuses the ITT of a live write is rejected (07, task in
 * progress), and its unsolicited Data-Out, which carries that ITT too, is
 * dropped: the live write still takes the Data-Out its R2T asked for and
 * completes, and the rejected one writes nothing. */
static void rejected_duplicate_itt_leaves_the_live_task_alone(void **state)
{
	(void)state;
	need_server();
	struct sess s;
	uint32_t lba = SCRATCH(18), dup_lba = SCRATCH(18) + 64;
	unsol_session(&s, lba, 16, 0x1800);
	write_verify(&s, dup_lba, 8, 0x1810);
	uint8_t w[16 * BS], dup_w[8 * BS];
	tl_fill(w, lba, 16, BS, 0x1801);
	tl_fill(dup_w, dup_lba, 8, BS, 0x1811);

	/* The live write: F set, no unsolicited data, so all of it by R2T. */
	uint8_t cdb[10] = { 0x2a, 0, (uint8_t)(lba >> 24), (uint8_t)(lba >> 16), (uint8_t)(lba >> 8),
			    (uint8_t)lba, 0, 0, 16, 0 };
	uint8_t h[BHS];
	uint32_t itt = s.itt++;
	cmd_header(&s, h, cdb, sizeof(cdb), true, sizeof(w), itt);
	s.cmdsn++;
	assert_int_equal(send_pdu(&s, h, NULL, 0, 0), 0);
	struct pdu p;
	assert_int_equal(recv_pdu(&s, &p, IO_MS), R_PDU);
	assert_int_equal(p.h[0] & 0x3f, OP_R2T);
	assert_int_equal(get32(p.h + 16), itt);
	uint32_t ttt = get32(p.h + 20), r2t_off = get32(p.h + 40), r2t_len = get32(p.h + 44);
	pdu_free(&p);
	assert_int_equal(r2t_off, 0);
	assert_int_equal(r2t_len, sizeof(w));

	/* The duplicate, with its unsolicited Data-Out. */
	unsol_write(&s, itt, s.cmdsn, false, dup_lba, 8, dup_w);
	s.cmdsn++;
	assert_int_equal(recv_pdu(&s, &p, IO_MS), R_PDU);
	assert_int_equal(p.h[0] & 0x3f, OP_REJECT);
	assert_int_equal(p.h[2], 0x07);
	pdu_free(&p);

	/* The live write's data, as its R2T asked. */
	assert_int_equal(send_dataout(&s, itt, ttt, 0, 0, w, sizeof(w), true, 0), 0);
	int rc = recv_pdu(&s, &p, IO_MS);
	if (rc != R_PDU)
		fail_msg("the live write did not complete (%s)", rc == R_CLOSED ? "connection dropped" :
			 "no answer");
	assert_int_equal(p.h[0] & 0x3f, OP_SCSI_RSP);
	assert_int_equal(get32(p.h + 16), itt);
	assert_int_equal(p.h[2], 0);
	assert_int_equal(p.h[3], 0);
	pdu_free(&p);
	assert_true(holds(&s, lba, 16, 0x1801));
	session_goes_on(&s, dup_lba, 8, 0x1810);
}

/* A Logout (close the session) while 16 reads of 1 MiB still stream their
 * Data-In: the Logout Response comes (RFC 7143 11.15: after it nothing
 * more), whatever of the reads came before it is in order, the connection
 * then closes, and the target goes on. */
static void logout_while_reads_stream(void **state)
{
	(void)state;
	need_server();
	static const char *const keys[] = { "MaxRecvDataSegmentLength=4096", NULL };
	struct sess s;
	login_ok(&s, &(struct login_opts){ .keys = keys });
	tur_ok(&s);
	/* 16 MiB in all: more than the socket buffers hold. */
	enum { READS = 16, BLOCKS = 2048 };
	uint32_t first = s.itt, next[READS] = { 0 }, pdus = 0, done = 0;
	bool status[READS] = { false };
	for (unsigned i = 0; i < READS; i++) {
		uint32_t lba = i * BLOCKS;
		uint8_t cdb[10] = { 0x28, 0, (uint8_t)(lba >> 24), (uint8_t)(lba >> 16),
				    (uint8_t)(lba >> 8), (uint8_t)lba, 0, BLOCKS >> 8, BLOCKS & 0xff, 0 };
		uint8_t h[BHS];
		cmd_header(&s, h, cdb, sizeof(cdb), false, BLOCKS * BS, s.itt++);
		s.cmdsn++;
		assert_int_equal(send_pdu(&s, h, NULL, 0, 0), 0);
	}
	struct pdu p;
	assert_int_equal(recv_pdu(&s, &p, IO_MS), R_PDU);
	assert_int_equal(p.h[0] & 0x3f, OP_DATA_IN);
	uint32_t k = get32(p.h + 16) - first;
	assert_true(k < READS);
	assert_int_equal(get32(p.h + 40), 0);
	next[k] = p.dlen;
	pdus++;
	pdu_free(&p);

	uint8_t lo[BHS] = { IMMEDIATE | OP_LOGOUT, 0x80 };
	uint32_t lo_itt = s.itt++;
	put32(lo + 16, lo_itt);
	put32(lo + 24, s.cmdsn);
	put32(lo + 28, s.expstatsn);
	assert_int_equal(send_pdu(&s, lo, NULL, 0, 0), 0);
	bool logged_out = false;
	for (;;) {
		int rc = recv_pdu(&s, &p, IO_MS);
		if (rc == R_CLOSED)
			break;
		if (rc != R_PDU)
			fail_msg("%s after %u Data-In PDUs%s", rc == R_TIMEOUT ? "no answer and no close" :
				 proto_err, pdus, logged_out ? " and the Logout Response" : "");
		unsigned op = p.h[0] & 0x3f;
		uint32_t t = get32(p.h + 16), off = get32(p.h + 40);
		bool s_bit = p.h[1] & 0x01;
		uint8_t response = p.h[2];
		pdu_free(&p);
		if (logged_out)
			fail_msg("opcode 0x%02x came after the Logout Response", op);
		k = t - first;
		if (op == OP_LOGOUT_RSP) {
			assert_int_equal(t, lo_itt);
			assert_int_equal(response, 0);
			logged_out = true;
		} else if (op == OP_DATA_IN && k < READS && !status[k]) {
			if (off != next[k])
				fail_msg("Data-In of task 0x%x at offset %u, expected %u", t, off, next[k]);
			next[k] += get24(p.h + 5);
			pdus++;
			status[k] = s_bit;
			done += s_bit;
		} else if (op == OP_SCSI_RSP && k < READS && !status[k]) {
			status[k] = true;
			done++;
		} else {
			fail_msg("opcode 0x%02x for task 0x%x", op, t);
		}
	}
	if (!logged_out)
		fail_msg("the connection closed without a Logout Response");
	printf("# logout during %u reads: %u Data-In PDUs, %u reads ended, then the Logout Response\n",
	       READS, pdus, done);
	sess_close(&s);
	healthy();
}

/* A server of its own with --max-connections 4: a fifth connection is
 * refused, or waits until one of the four is gone. */
static void max_connections_is_enforced(void **state)
{
	(void)state;
	need_server();
	if (external)
		skip();
	const char *args[] = { "--max-connections", "4", NULL };
	unsigned short port;
	pid_t pid = server_start(args, &port);
	assert_true(pid > 0);
	struct sess s[4], fifth;
	for (int i = 0; i < 4; i++)
		login_ok(&s[i], &(struct login_opts){ .port = port });
	/* The known data on this server too, for the health check. */
	uint8_t *b = malloc(KNOWN_BLOCKS * BS);
	assert_non_null(b);
	tl_fill(b, KNOWN_LBA, KNOWN_BLOCKS, BS, KNOWN_SEED);
	rw_ok(&s[0], true, KNOWN_LBA, KNOWN_BLOCKS, b);
	free(b);
	int rc = login(&fifth, &(struct login_opts){ .port = port });
	printf("# fifth connection: %d (0x%04x)\n", rc, rc > 0 ? rc : 0);
	if (rc == 0)
		fail_msg("a fifth session logged in with --max-connections 4");
	sess_close(&fifth);
	logout(&s[0]);
	healthy_at(port);
	for (int i = 1; i < 4; i++)
		sess_close(&s[i]);
	int st = server_stop(pid);
	assert_true(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Last: the server survived all of the above and stops cleanly. */
static void server_exits_cleanly_on_sigterm(void **state)
{
	(void)state;
	need_server();
	if (external)
		skip();
	assert_true(server_alive(srv_pid));
	int st = server_stop(srv_pid);
	srv_pid = -1;
	if (st < 0)
		fail_msg("hbakit serve iscsi did not exit within 15 s of SIGTERM");
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		fail_msg("hbakit serve iscsi ended with wait status 0x%x on SIGTERM", st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(login_and_io_work),
		cmocka_unit_test(pr_full_status_names_the_iscsi_port),
		cmocka_unit_test(writes_and_reads_through_every_data_path),
		cmocka_unit_test(first_burst_never_above_max_burst),
		cmocka_unit_test(first_burst_offered_before_max_burst),
		cmocka_unit_test(unknown_opcode_is_rejected),
		cmocka_unit_test(data_segment_beyond_mrdsl_is_refused),
		cmocka_unit_test(huge_ahs_is_refused),
		cmocka_unit_test(truncated_pdu_then_close),
		cmocka_unit_test(cmdsn_outside_the_window_is_not_executed),
		cmocka_unit_test(command_ahead_of_a_gap_waits),
		cmocka_unit_test(inquiry_overflow_is_reported),
		cmocka_unit_test(dataout_with_wrong_ttt),
		cmocka_unit_test(dataout_with_wrong_offset),
		cmocka_unit_test(dataout_with_wrong_datasn),
		cmocka_unit_test(unsolicited_dataout_with_wrong_ttt),
		cmocka_unit_test(unsolicited_dataout_with_wrong_offset),
		cmocka_unit_test(unsolicited_dataout_with_wrong_datasn),
		cmocka_unit_test(client_closes_mid_dataout),
		cmocka_unit_test(header_digests),
		cmocka_unit_test(data_digests),
		cmocka_unit_test(pdus_before_login_are_refused),
		cmocka_unit_test(logins_with_garbage_are_refused),
		cmocka_unit_test(connection_flood),
		cmocka_unit_test(one_session_cannot_hold_every_buffer),
		cmocka_unit_test(heap_buffers_have_one_budget),
		cmocka_unit_test(held_commands_take_no_buffer),
		cmocka_unit_test(held_command_waits_for_the_one_before_it),
		cmocka_unit_test(waiting_writes_keep_bounded_data_aside),
		cmocka_unit_test(immediate_data_waits_for_its_digest),
		cmocka_unit_test(unread_replies_do_not_pile_up),
		cmocka_unit_test(persistent_reservation_across_two_sessions),
		cmocka_unit_test(abort_task_set_waits_for_solicited_data),
		cmocka_unit_test(write_aborted_mid_r2t),
		cmocka_unit_test(task_management_ahead_of_a_gap_waits),
		cmocka_unit_test(requests_ahead_of_a_gap_wait),
		cmocka_unit_test(held_requests_keep_bounded_data_aside),
		cmocka_unit_test(held_requests_wait_for_the_command_being_read),
		cmocka_unit_test(held_write_waits_for_the_command_being_read),
		cmocka_unit_test(abort_of_a_lost_command_fills_the_gap),
		cmocka_unit_test(pre_aborted_write_drops_its_data_out),
		cmocka_unit_test(ignored_write_drops_its_data_out),
		cmocka_unit_test(rejected_write_drops_its_data_out),
		cmocka_unit_test(write_announcing_impossible_data_out_is_rejected),
		cmocka_unit_test(impossible_writes_forget_no_dropped_itt),
		cmocka_unit_test(rejected_duplicate_itt_leaves_the_live_task_alone),
		cmocka_unit_test(aborted_write_data_out_after_many_others),
		cmocka_unit_test(logout_while_reads_stream),
		cmocka_unit_test(max_connections_is_enforced),
		cmocka_unit_test(server_exits_cleanly_on_sigterm),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
