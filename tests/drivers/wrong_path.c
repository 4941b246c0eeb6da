/* SPDX-License-Identifier: MIT */
/*
 * HBK-C04: completes a trigger task (LBA >= 4242) by the wrong path first,
 * then correctly (so nothing waits for a timeout).  A per-task task gets
 * BundledParallelTaskCompletion: fault=raw sends a BUNDLED_COMPLETION naming
 * its index, fault=api calls hbk_drv_bundled_complete without a bundled
 * handle.  A bundled slot gets a raw PARALLEL_COMPLETION, then its correct
 * completion as a BUNDLED_COMPLETION message: the completion ring is a
 * separate channel, and only messages on one socket keep their order, which
 * is what tells the host the wrong completion came first.
 */
#include <string.h>

#include "tests/drivers/lib/tdrv.h"

static bool complete(struct tdrv *t, struct tdrv_io *io)
{
	if (!tdrv_is_trigger(&io->task))
		return false;
	if (io->path == TDRV_BUNDLED) {
		tdrv_send_parallel(t, io->index, &io->resp);
		t->resps[io->index] = io->resp;
		tdrv_send_slots(t, 1, &io->index, 1);
		return true;
	}
	if (!strcmp(tdrv_arg(t, "fault", "raw"), "api"))
		hbk_drv_bundled_complete(t->d, NULL, &io->index, 1);
	else
		tdrv_send_slots(t, 1, &io->index, 1);
	tdrv_complete(t, io);
	return true;
}

static const struct tdrv_hooks hooks = { .complete = complete };

int main(int argc, char **argv)
{
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "wrong_path";
	return tdrv_main(argc, argv, &ops, &hooks);
}
