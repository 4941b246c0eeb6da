/* SPDX-License-Identifier: MIT */
/*
 * HBK-C10: raises a completion outside the controller's life.  when=init
 * sends it from init_controller (before start), when=stop from the stop
 * entry point; via=bundled (default) sends a BUNDLED_COMPLETION of slot 0,
 * via=parallel a PARALLEL_COMPLETION of task 0.  A driver -> host call
 * follows, so the host has read the completion when the entry point returns.
 */
#include <string.h>

#include "tests/drivers/lib/tdrv.h"

static void send_completion(struct tdrv *t)
{
	uint16_t slot = 0;
	if (!strcmp(tdrv_arg(t, "via", "bundled"), "parallel")) {
		struct hbk_response r;
		memset(&r, 0, sizeof(r));
		r.version = HBK_TASK_VERSION;
		r.controller_task_id = 1;
		r.service_response = HBK_SR_TASK_COMPLETE;
		tdrv_send_parallel(t, 0, &r);
	} else {
		/* A message of its own: the runtime would refuse a slot that
		 * is not at the driver before the host could see the timing. */
		tdrv_send_slots(t, 1, &slot, 1);
	}
}

static int init(struct tdrv *t, struct hbk_drv_constraints *cons)
{
	(void)cons;
	if (!strcmp(tdrv_arg(t, "when", "init"), "init"))
		send_completion(t); /* the constraints call that follows syncs */
	return 0;
}

static void stop(struct tdrv *t)
{
	if (strcmp(tdrv_arg(t, "when", "init"), "stop"))
		return;
	send_completion(t);
	hbk_drv_target_present(t->d, 0);
}

static const struct tdrv_hooks hooks = { .init = init, .stop = stop };

int main(int argc, char **argv)
{
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "early_completion";
	return tdrv_main(argc, argv, &ops, &hooks);
}
