/* SPDX-License-Identifier: MIT */
/*
 * A driver whose LUN reports unit attentions: the first ua=N (1) trigger
 * tasks (LBA >= 4242) end with CHECK CONDITION, UNIT ATTENTION, BUS DEVICE
 * RESET FUNCTION OCCURRED and no data, as after a LUN reset.  The task was
 * executed all the same (a host must not rely on either).
 */
#include <stdlib.h>
#include <string.h>

#include "tests/drivers/lib/tdrv.h"

static unsigned reported;   /* on the interrupt queue only */

static bool complete(struct tdrv *t, struct tdrv_io *io)
{
	if (!tdrv_is_trigger(&io->task) || reported >= (unsigned)atoi(tdrv_arg(t, "ua", "1")))
		return false;
	reported++;
	uint8_t sense[18] = { 0x70, 0, 0x06, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x29, 0x03 };
	io->resp.service_response = HBK_SR_TASK_COMPLETE;
	io->resp.completion_status = HBK_STATUS_CHECK_CONDITION;
	io->resp.bytes_transferred = 0;
	io->resp.sense_len = sizeof(sense);
	memcpy(io->resp.sense, sense, sizeof(sense));
	return false;
}

static const struct tdrv_hooks hooks = { .complete = complete };

int main(int argc, char **argv)
{
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "unit_attention";
	return tdrv_main(argc, argv, &ops, &hooks);
}
