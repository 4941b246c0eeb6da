/* SPDX-License-Identifier: MIT */
/*
 * HBK-C05: corrupts one field of the response of a trigger task (LBA >=
 * 4242) before completing it, on either path: fault=version (2),
 * fault=taskid (not the task's id), fault=bytes (more than requested),
 * fault=sense (sense_len 253), fault=status (0x100, GOOD once cut to a
 * byte), fault=delivery (a delivery failure with status 9); and one that is
 * well formed but does not do the job: fault=short (GOOD with nothing
 * transferred).
 */
#include <string.h>

#include "tests/drivers/lib/tdrv.h"

static bool complete(struct tdrv *t, struct tdrv_io *io)
{
	if (!tdrv_is_trigger(&io->task))
		return false;
	const char *fault = tdrv_arg(t, "fault", "version");
	if (!strcmp(fault, "version"))
		io->resp.version = 2;
	else if (!strcmp(fault, "taskid"))
		io->resp.controller_task_id ^= 0x5a5a0000u;
	else if (!strcmp(fault, "bytes"))
		io->resp.bytes_transferred = io->task.requested_transfer_count + 4096;
	else if (!strcmp(fault, "sense"))
		io->resp.sense_len = HBK_SENSE_MAX + 1;
	else if (!strcmp(fault, "status"))
		io->resp.completion_status = 0x100;
	else if (!strcmp(fault, "delivery"))
		hbk_drv_response_fill(&io->resp, &io->task, HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE,
				      9, 0, NULL, 0);
	else if (!strcmp(fault, "short"))
		io->resp.bytes_transferred = 0;
	return false;
}

static const struct tdrv_hooks hooks = { .complete = complete };

int main(int argc, char **argv)
{
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "bad_response";
	return tdrv_main(argc, argv, &ops, &hooks);
}
