/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer harness of a whole iSCSI connection (src/iscsi): the target
 * serves a ram controller (build/drivers/hbk-ram, or $HBK_FUZZ_DRIVER; two
 * LUNs of 1 MiB, spawned once) on 127.0.0.1, and each input is the byte
 * stream one initiator sends on a fresh TCP connection: login, commands,
 * Data-Out, task management, text, logout, in whatever order and framing
 * the bytes say.  The harness then half-closes its side and reads what the
 * target answers until it closes the connection (at most 2 s), so every
 * PDU the stream holds reaches the connection's state machine on the
 * target's own threads, in this process, under the sanitizers.
 *
 * The SCSI commands run in the driver process, under whatever sanitizers
 * its build has (`make fuzz` passes the one of $(BUILD)).  A driver that
 * dies is a crash of the input that killed it: the harness aborts.  The
 * controller lives for the whole run, so what one input leaves behind
 * (LUN data, registrations, reservations, unit attentions) is there for
 * the next: a crash may need the inputs before it to reproduce.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/common.h"
#include "hbk/host.h"
#include "hbk/iscsi.h"

static struct hbk_ctl *ctl;
static struct hbk_iscsi *tgt;
static uint16_t port;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	setenv("HBK_LOG", "error", 0);   /* every refused PDU is a warning; keep the run quiet */
	const char *driver = getenv("HBK_FUZZ_DRIVER");
	static const char *const args[] = { "size=1M", "luns=2", NULL };
	struct hbk_ctl_opts co = {
		.driver = driver ? driver : "build/drivers/hbk-ram", .driver_args = args,
		.task_timeout_ms = 2000,
	};
	if (hbk_ctl_open(&co, &ctl)) {
		fprintf(stderr, "fuzz_iscsi_conn: cannot start %s (make all builds it)\n",
			co.driver);
		exit(1);
	}
	struct hbk_iscsi_opts io = {
		.ctl = ctl, .listen = "127.0.0.1:0", .login_timeout_ms = 2000, .queue_depth = 16,
	};
	char addr[64];
	if (hbk_iscsi_start(&io, &tgt) || hbk_iscsi_portal(tgt, addr, sizeof(addr), &port))
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		abort();
	struct sockaddr_in sa = {
		.sin_family = AF_INET, .sin_port = htons(port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	/* The harness closes first, so each connection leaves a TIME_WAIT
	 * behind for a minute: at a thousand a second one source address
	 * would run out of ports.  127/8 is all loopback; take turns. */
	static uint32_t next_src;
	struct sockaddr_in src = {
		.sin_family = AF_INET,
		.sin_addr.s_addr = htonl(0x7f000001u + (next_src++ % 4096) * 256),
	};
	if (bind(fd, (struct sockaddr *)&src, sizeof(src)))
		abort();
	/* libFuzzer's timer signals interrupt system calls: a connect goes
	 * on in the background, the others are retried. */
	int err = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) ? errno : 0;
	if (err == EINTR) {
		struct pollfd p = { .fd = fd, .events = POLLOUT };
		while (poll(&p, 1, -1) < 0 && errno == EINTR)
			;
		socklen_t len = sizeof(err);
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
	}
	if (err) {
		fprintf(stderr, "fuzz_iscsi_conn: connect: %s\n", strerror(err));
		abort();
	}
	/* The target may close before it has read everything: that is an
	 * answer, not an error. */
	size_t off = 0;
	while (off < size) {
		ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	shutdown(fd, SHUT_WR);
	uint64_t deadline = hbk_now_ns() + 2000000000ull;
	for (;;) {
		uint64_t now = hbk_now_ns();
		if (now >= deadline)
			break;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, (int)((deadline - now) / 1000000 + 1));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		static uint8_t sink[65536];
		ssize_t n = recv(fd, sink, sizeof(sink), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
	}
	close(fd);
	if (!hbk_ctl_alive(ctl)) {
		fprintf(stderr, "fuzz_iscsi_conn: the driver behind the target died\n");
		abort();
	}
	return 0;
}
