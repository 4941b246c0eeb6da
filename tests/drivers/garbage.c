/* SPDX-License-Identifier: MIT */
/*
 * HBK-C12 / HBK-C03: on a trigger task (LBA >= 4242) writes garbage=KIND on
 * the event channel.  Framing faults, after which the task is left
 * outstanding: magic, short (truncated), len (declared length mismatch),
 * type (unknown type), call (a host -> driver call type), big (oversized).
 * Content faults, after which the task completes correctly: count40 (a
 * BUNDLED_COMPLETION claiming 40 slots), index (slots 500 and 1000),
 * ringindex (the same through the completion ring).  ringtail: publishes a
 * completion-ring tail far past anything outstanding and rings the doorbell,
 * leaving the task outstanding.  shrink: truncates the shared region (found
 * through /proc/self/fd) to 0 bytes, says on stderr whether that worked,
 * and completes the task correctly.  flood: sends 10000 driver -> host
 * calls (MEDIA CHANGED) without waiting for a reply, leaving the task
 * outstanding.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "tests/drivers/lib/tdrv.h"

/* The completion ring, found the way a driver scribbling on shared memory
 * would: the host places the command slots right after the region header. */
static struct hbk_cring *ring_of(struct tdrv *t)
{
	struct hbk_region_hdr *h = (struct hbk_region_hdr *)((uint8_t *)t->cmds - 256);
	if (h->magic != HBK_REGION_MAGIC || h->cmd_off != 256)
		return NULL;
	return (struct hbk_cring *)((uint8_t *)h + h->cring_off);
}

/* Truncates every descriptor of the shared region this process holds. */
static void shrink_region(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		char path[300], target[256];
		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		ssize_t n = readlink(path, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = 0;
		if (strstr(target, "hbakit-region")) {
			int rc = ftruncate(atoi(e->d_name), 0);
			fprintf(stderr, "garbage: truncating the shared region: %s\n",
				rc ? strerror(errno) : "done");
		}
	}
	if (d)
		closedir(d);
}

static bool complete(struct tdrv *t, struct tdrv_io *io)
{
	if (!tdrv_is_trigger(&io->task))
		return false;
	const char *kind = tdrv_arg(t, "garbage", "magic");
	uint16_t idx[2] = { 500, 1000 };
	if (!strcmp(kind, "count40")) {
		tdrv_send_slots(t, 40, &io->index, 1);
		return false;
	}
	if (!strcmp(kind, "index")) {
		tdrv_send_slots(t, 2, idx, 2);
		return false;
	}
	if (!strcmp(kind, "flood")) {
		struct hbk_msg_call call;
		memset(&call, 0, sizeof(call));
		hbk_msg_init(&call.hdr, HBK_MSG_MEDIA_CHANGED, 0, sizeof(call));
		for (unsigned i = 0; i < 10000; i++) {
			call.hdr.seq = 100000 + i;
			if (tdrv_send_raw(t, &call, sizeof(call)))
				break;   /* the host cut the connection */
		}
		return true;
	}
	if (!strcmp(kind, "shrink")) {
		shrink_region();
		return false;
	}
	if (!strcmp(kind, "ringindex")) {
		hbk_drv_bundled_complete(t->d, t->bundled, idx, 2);
		return false;
	}
	if (!strcmp(kind, "ringtail")) {
		struct hbk_cring *ring = ring_of(t);
		if (ring) {
			__atomic_fetch_add(&ring->tail, 5000, __ATOMIC_RELEASE);
			struct hbk_msg_hdr bell;
			hbk_msg_init(&bell, HBK_MSG_RING_DOORBELL, 0, sizeof(bell));
			tdrv_send_raw(t, &bell, sizeof(bell));
		}
		return true;
	}
	union {
		struct hbk_msg_slots slots;
		struct hbk_msg_call call;
		uint8_t raw[2048];
	} m;
	memset(&m, 0, sizeof(m));
	size_t len = sizeof(m.slots);
	hbk_msg_init(&m.slots.hdr, HBK_MSG_BUNDLED_COMPLETION, 0, sizeof(m.slots));
	m.slots.count = 1;
	m.slots.index[0] = io->index;
	if (!strcmp(kind, "magic"))
		m.slots.hdr.magic = 0xdeadbeef;
	else if (!strcmp(kind, "short"))
		len = 8;
	else if (!strcmp(kind, "len"))
		m.slots.hdr.len = sizeof(m.slots) + 8;
	else if (!strcmp(kind, "type"))
		m.slots.hdr.type = 99;
	else if (!strcmp(kind, "call"))
		hbk_msg_init(&m.call.hdr, HBK_MSG_START, 0, len = sizeof(m.call));
	else if (!strcmp(kind, "big"))
		m.slots.hdr.len = (uint32_t)(len = sizeof(m.raw));
	tdrv_send_raw(t, &m, len);
	return true; /* the task stays outstanding */
}

static const struct tdrv_hooks hooks = { .complete = complete };

int main(int argc, char **argv)
{
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "garbage";
	return tdrv_main(argc, argv, &ops, &hooks);
}
