/* SPDX-License-Identifier: MIT */
/*
 * A well-behaved driver that exercises the driver -> framework target calls
 * when the test asks: a WRITE at the trigger LBA halves its LUN and reports
 * the media change; a READ there destroys the target, checking presence
 * before and after.  The calls go out from the AuxiliaryQueue, never from
 * the InterruptQueue whose I/O the host needs while serving them.
 */
#include <stdio.h>
#include <string.h>

#include "tests/drivers/lib/tdrv.h"

static struct hbk_drv_work media_work, destroy_work;
static struct tdrv *drv;

static void media(struct hbk_drv_work *w)
{
	(void)w;
	fprintf(stderr, "lifecycle: media changed: %d\n", hbk_drv_media_changed(drv->d, 0, 0));
}

static void destroy(struct hbk_drv_work *w)
{
	(void)w;
	int before = hbk_drv_target_present(drv->d, 0);
	int destroyed = hbk_drv_destroy_target(drv->d, 0);
	int after = hbk_drv_target_present(drv->d, 0);
	fprintf(stderr, "lifecycle: present before %d, destroy %d, present after %d\n",
		before, destroyed, after);
}

/* On the InterruptQueue, which also runs the emulation: the capacity
 * changes between two commands, never under one. */
static bool complete(struct tdrv *t, struct tdrv_io *io)
{
	if (!tdrv_is_trigger(&io->task))
		return false;
	if (!drv)
		drv = t;  /* published to the AuxiliaryQueue by the dispatch below */
	if (io->task.direction == HBK_DIR_WRITE) {
		t->lun.cfg.nblocks /= 2;
		hbk_drv_queue_dispatch(t->aux, &media_work);
	} else {
		hbk_drv_queue_dispatch(t->aux, &destroy_work);
	}
	return false;
}

int main(int argc, char **argv)
{
	static const struct tdrv_hooks hooks = { .complete = complete };
	hbk_drv_work_init(&media_work, media);
	hbk_drv_work_init(&destroy_work, destroy);
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "target_lifecycle";
	return tdrv_main(argc, argv, &ops, &hooks);
}
