/* SPDX-License-Identifier: MIT */
/*
 * The emulated card the device tests drive (test_device, test_device_sched):
 * two 4 MiB memory drives behind a card that is created, probed through its
 * port and enabled, and 64 page-aligned, zeroed pages for data.  Included
 * by the tests, after cmocka and hbk/device.h.
 */
#ifndef HBK_TESTS_DEVRIG_H
#define HBK_TESTS_DEVRIG_H

#include <stdlib.h>
#include <string.h>

#define RIG_BS    512u
#define RIG_PAGES 64u

struct rig {
	struct hbk_vol *vol[2];
	struct hbk_dev *dev;
	struct hbk_dev_port port;
	uint8_t *buf;                 /* RIG_PAGES page-aligned pages for data */
};

/* Brings the card up with `credits` I/O credits, `queues` reply queues
 * (0: the card's default) and `threads` firmware threads; with
 * every_reply, queue 0 interrupts on every reply (no coalescing time). */
static void rig_up_with(struct rig *r, uint32_t credits, uint32_t queues, uint32_t threads,
			bool every_reply)
{
	memset(r, 0, sizeof(*r));
	assert_int_equal(hbk_dev_vol_mem("zero", 4u << 20, RIG_BS, &r->vol[0]), 0);
	assert_int_equal(hbk_dev_vol_mem("one", 4u << 20, RIG_BS, &r->vol[1]), 0);
	struct hbk_dev_config cfg = { .vols = r->vol, .nvols = 2, .credits = credits,
				      .queues = queues, .threads = threads };
	assert_int_equal(hbk_dev_create(&cfg, &r->dev), 0);
	assert_int_equal(hbk_dev_read32(r->dev, HBK_DEV_REG_STATUS), HBK_DEV_READY);
	assert_int_equal(hbk_dev_port_init(&r->port, r->dev), 0);
	if (every_reply)
		hbk_dev_write32(r->dev, HBK_DEV_REG_IRQ_USEC(0), 0);
	hbk_dev_write32(r->dev, HBK_DEV_REG_CONTROL, HBK_DEV_CTL_ENABLE);
	assert_int_equal(hbk_dev_read32(r->dev, HBK_DEV_REG_STATUS), HBK_DEV_OPERATIONAL);
	assert_int_equal(posix_memalign((void **)&r->buf, 4096, RIG_PAGES * 4096), 0);
	memset(r->buf, 0, RIG_PAGES * 4096);
}

/* COMPARE AND WRITE of one block at lba 0 of target t: compare with zeros,
 * write zeros (buf: 2 zeroed blocks). */
static struct hbk_dev_frame caw_frame(uint32_t tag, uint32_t t, void *buf)
{
	struct hbk_dev_frame f = { .tag = tag, .function = HBK_DEV_FN_SCSI_IO, .target = t,
				   .cdb_len = 16, .dir = HBK_DIR_WRITE,
				   .data_addr = (uintptr_t)buf, .data_len = 2 * RIG_BS };
	f.cdb[0] = 0x89;
	f.cdb[13] = 1;
	return f;
}

static void rig_down(struct rig *r)
{
	hbk_dev_destroy(r->dev);
	hbk_dev_vol_close(r->vol[0]);
	hbk_dev_vol_close(r->vol[1]);
	free(r->buf);
}

#endif
