/* SPDX-License-Identifier: MIT */
/*
 * Message transport over AF_UNIX SOCK_SEQPACKET: send with optional
 * descriptor passing, receive with a time limit, and the framing checks that
 * turn truncated, oversized, mistyped or garbage messages into -EBADMSG with a
 * reason instead of a crash.  Both processes use it, so neither trusts the
 * other's bytes.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/common.h"

static const char *const call_names[] = {
	[HBK_MSG_HELLO] = "HELLO",
	[HBK_MSG_INIT_CONTROLLER] = "INIT_CONTROLLER",
	[HBK_MSG_REPORT_INITIATOR_ID] = "REPORT_INITIATOR_ID",
	[HBK_MSG_REPORT_HIGHEST_ID] = "REPORT_HIGHEST_ID",
	[HBK_MSG_REPORT_MAX_TASKS] = "REPORT_MAX_TASKS",
	[HBK_MSG_GET_DMA_SPEC] = "GET_DMA_SPEC",
	[HBK_MSG_MAP_HBA_DATA] = "MAP_HBA_DATA",
	[HBK_MSG_MAP_BUNDLED] = "MAP_BUNDLED",
	[HBK_MSG_START] = "START",
	[HBK_MSG_DEVICE_MANAGEMENT] = "DEVICE_MANAGEMENT",
	[HBK_MSG_INIT_TARGET] = "INIT_TARGET",
	[HBK_MSG_MULTIPATHING] = "MULTIPATHING",
	[HBK_MSG_AUTOSENSE] = "AUTOSENSE",
	[HBK_MSG_PARALLEL_FEATURE] = "PARALLEL_FEATURE",
	[HBK_MSG_HIGHEST_LUN] = "HIGHEST_LUN",
	[HBK_MSG_PROCESS_TASK] = "PROCESS_TASK",
	[HBK_MSG_PROCESS_BUNDLED] = "PROCESS_BUNDLED",
	[HBK_MSG_ABORT_TASK] = "ABORT_TASK",
	[HBK_MSG_ABORT_TASK_SET] = "ABORT_TASK_SET",
	[HBK_MSG_CLEAR_ACA] = "CLEAR_ACA",
	[HBK_MSG_CLEAR_TASK_SET] = "CLEAR_TASK_SET",
	[HBK_MSG_LUN_RESET] = "LUN_RESET",
	[HBK_MSG_TARGET_RESET] = "TARGET_RESET",
	[HBK_MSG_STOP] = "STOP",
	[HBK_MSG_SHARE_REGION] = "SHARE_REGION",
};

const char *hbk_msg_name(unsigned type)
{
	switch (type) {
	case HBK_MSG_PARALLEL_COMPLETION: return "PARALLEL_COMPLETION";
	case HBK_MSG_BUNDLED_COMPLETION: return "BUNDLED_COMPLETION";
	case HBK_MSG_VIOLATION: return "VIOLATION";
	case HBK_MSG_RING_DOORBELL: return "RING_DOORBELL";
	case HBK_MSG_CREATE_TARGET: return "CREATE_TARGET";
	case HBK_MSG_DESTROY_TARGET: return "DESTROY_TARGET";
	case HBK_MSG_TARGET_PRESENT: return "TARGET_PRESENT";
	case HBK_MSG_MEDIA_CHANGED: return "MEDIA_CHANGED";
	case HBK_MSG_REPORT_CONSTRAINTS: return "REPORT_CONSTRAINTS";
	default:
		if (type < HBK_ARRAY_SIZE(call_names) && call_names[type])
			return call_names[type];
		return "?";
	}
}

void hbk_msg_init(struct hbk_msg_hdr *h, unsigned type, uint32_t seq, uint32_t len)
{
	memset(h, 0, sizeof(*h));
	h->magic = HBK_MSG_MAGIC;
	h->type = (uint16_t)type;
	h->seq = seq;
	h->len = len;
}

size_t hbk_msg_expect(unsigned type, bool reply)
{
	switch (type) {
	case HBK_MSG_HELLO:
		return reply ? sizeof(struct hbk_msg_hello_reply) : sizeof(struct hbk_msg_call);
	case HBK_MSG_PROCESS_TASK:
		return reply ? sizeof(struct hbk_msg_task_reply) : sizeof(struct hbk_msg_task);
	case HBK_MSG_PARALLEL_COMPLETION:
		return reply ? 0 : sizeof(struct hbk_msg_completion);
	case HBK_MSG_BUNDLED_COMPLETION:
		return reply ? 0 : sizeof(struct hbk_msg_slots);
	case HBK_MSG_VIOLATION:
		return reply ? 0 : sizeof(struct hbk_msg_violation);
	case HBK_MSG_RING_DOORBELL:
		return reply ? 0 : sizeof(struct hbk_msg_hdr);
	case HBK_MSG_REPORT_CONSTRAINTS:
		return reply ? sizeof(struct hbk_msg_reply) : sizeof(struct hbk_msg_constraints);
	case HBK_MSG_CREATE_TARGET:
	case HBK_MSG_DESTROY_TARGET:
	case HBK_MSG_TARGET_PRESENT:
	case HBK_MSG_MEDIA_CHANGED:
		return reply ? sizeof(struct hbk_msg_reply) : sizeof(struct hbk_msg_call);
	default:
		if (type >= 1 && type <= HBK_MSG_CALL_LAST)
			return reply ? sizeof(struct hbk_msg_reply) : sizeof(struct hbk_msg_call);
		return 0;
	}
}

int hbk_msg_send(int sock, const void *msg, size_t len, int pass_fd)
{
	return hbk_msg_send_flags(sock, msg, len, pass_fd, 0);
}

int hbk_msg_send_flags(int sock, const void *msg, size_t len, int pass_fd, int flags)
{
	struct iovec iov = { .iov_base = (void *)msg, .iov_len = len };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (pass_fd >= 0) {
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = sizeof(ctl.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
	}
	for (;;) {
		ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL | flags);
		if (n == (ssize_t)len)
			return 0;
		if (n >= 0)
			return -EMSGSIZE;
		if (errno != EINTR)
			return -errno;
	}
}

static void close_passed_fds(struct msghdr *mh, int *fd_out)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < nfd; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (fd_out && *fd_out < 0)
				*fd_out = fd;
			else
				close(fd);
		}
	}
}

int hbk_msg_recv(int sock, void *buf, size_t size, int timeout_ms, int *fd_out,
		 const char **why)
{
	if (fd_out)
		*fd_out = -1;
	if (timeout_ms >= 0) {
		struct pollfd p = { .fd = sock, .events = POLLIN };
		int r;
		do
			r = poll(&p, 1, timeout_ms);
		while (r < 0 && errno == EINTR);
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
	}
	struct iovec iov = { .iov_base = buf, .iov_len = size };
	union {
		char buf[CMSG_SPACE(4 * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf) };
	ssize_t n;
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == ECONNRESET ? -ECONNRESET : -errno;
	close_passed_fds(&mh, fd_out);
	if (n == 0)
		return -ECONNRESET;

	const char *reason = NULL;
	const struct hbk_msg_hdr *h = buf;
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
		reason = "message larger than any valid message";
	else if ((size_t)n < sizeof(*h))
		reason = "message shorter than its header";
	else if (h->magic != HBK_MSG_MAGIC)
		reason = "wrong magic";
	else if (h->len != (uint32_t)n)
		reason = "declared length differs from the bytes received";
	else if (h->flags & ~HBK_MSGF_REPLY)
		reason = "unknown flag bits";
	else {
		size_t want = hbk_msg_expect(h->type, h->flags & HBK_MSGF_REPLY);
		if (!want)
			reason = "unknown message type";
		else if (want != (size_t)n)
			reason = "wrong length for its type";
	}
	if (reason) {
		if (why)
			*why = reason;
		if (fd_out && *fd_out >= 0) {
			close(*fd_out);
			*fd_out = -1;
		}
		return -EBADMSG;
	}
	return (int)n;
}
