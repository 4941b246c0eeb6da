/* SPDX-License-Identifier: MIT */
/*
 * A driver that completes a task a second time, late, when the host has
 * reissued its slot to another task.  A READ or WRITE at LBA 4242 is
 * completed at once and again 200 ms later with the same response (the
 * earlier task's); one at LBA 5000 or above is executed and completed only
 * 600 ms after it came (a device that moves the data at the end), with its
 * buffer marked 0xEE meanwhile.  The late work runs on the InterruptQueue
 * (tdrv_defer).
 */
#include <string.h>

#include "tests/drivers/lib/tdrv.h"

enum { LATE, AGAIN };

static void due(struct tdrv *t, struct tdrv_io *io, int kind)
{
	if (kind == LATE) {
		tdrv_execute(t, &io->task, &io->resp);
		tdrv_complete(t, io);
	} else if (io->path == TDRV_BUNDLED) {
		hbk_drv_bundled_complete(t->d, io->bundled, &io->index, 1);
	} else {
		hbk_drv_task_complete(t->d, io->action, &io->resp);
	}
}

static bool complete(struct tdrv *t, struct tdrv_io *io)
{
	uint64_t lba;
	if (!tdrv_task_lba(&io->task, &lba))
		return false;
	if (lba == TDRV_TRIGGER_LBA) {
		tdrv_complete(t, io);
		tdrv_defer(t, io, 200, AGAIN);
		return true;
	}
	if (lba >= 5000) {
		/* The base executed it already: undo a READ's data, as a device
		 * that moves it at the end would show until then. */
		if (io->task.direction == HBK_DIR_READ)
			memset(hbk_drv_dma(t->d, io->task.buffer_iova, io->task.requested_transfer_count),
			       0xEE, io->task.requested_transfer_count);
		tdrv_defer(t, io, 600, LATE);
		return true;
	}
	return false;
}

static const struct tdrv_hooks hooks = { .complete = complete, .due = due };

int main(int argc, char **argv)
{
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "late_double";
	return tdrv_main(argc, argv, &ops, &hooks);
}
