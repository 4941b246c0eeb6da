/* SPDX-License-Identifier: MIT */
/*
 * The emulated RAID controller under schedules forced at link time: this
 * test is linked with -Wl,--wrap=hbk_dev_read32 (every call from the
 * driver's side, port.c, comes here first), so it can run another party's
 * step at the one point where a race would have it: another producer
 * posting between a producer's reservation and its look at REQ_CI.  Each
 * wrapper does nothing until a test arms it.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hbk/device.h"
#include "tests/lib/testlib.h"

#define BS 512u
#define MiB (1024u * 1024u)

uint32_t __real_hbk_dev_read32(struct hbk_dev *dev, uint32_t reg);
uint32_t __wrap_hbk_dev_read32(struct hbk_dev *dev, uint32_t reg);

struct rig {
	struct hbk_vol *vol[2];
	struct hbk_dev *dev;
	struct hbk_dev_port port;
	uint8_t *buf;                 /* 16 page-aligned pages for data */
};

/* A card of two 4 MiB memory drives with `credits` I/O credits and
 * `threads` firmware threads, enabled, one reply queue that interrupts on
 * every reply. */
static void rig_up(struct rig *r, uint32_t credits, uint32_t threads)
{
	memset(r, 0, sizeof(*r));
	assert_int_equal(hbk_dev_vol_mem("zero", 4 * MiB, BS, &r->vol[0]), 0);
	assert_int_equal(hbk_dev_vol_mem("one", 4 * MiB, BS, &r->vol[1]), 0);
	struct hbk_dev_config cfg = { .vols = r->vol, .nvols = 2, .credits = credits,
				      .threads = threads };
	assert_int_equal(hbk_dev_create(&cfg, &r->dev), 0);
	assert_int_equal(hbk_dev_port_init(&r->port, r->dev), 0);
	hbk_dev_write32(r->dev, HBK_DEV_REG_IRQ_USEC(0), 0);
	hbk_dev_write32(r->dev, HBK_DEV_REG_CONTROL, HBK_DEV_CTL_ENABLE);
	assert_int_equal(hbk_dev_read32(r->dev, HBK_DEV_REG_STATUS), HBK_DEV_OPERATIONAL);
	assert_int_equal(posix_memalign((void **)&r->buf, 4096, 16 * 4096), 0);
	memset(r->buf, 0, 16 * 4096);
}

static void rig_down(struct rig *r)
{
	hbk_dev_destroy(r->dev);
	hbk_dev_vol_close(r->vol[0]);
	hbk_dev_vol_close(r->vol[1]);
	free(r->buf);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* TEST UNIT READY for target 0. */
static struct hbk_dev_frame tur(uint32_t tag)
{
	return (struct hbk_dev_frame){ .tag = tag, .function = HBK_DEV_FN_SCSI_IO, .cdb_len = 6 };
}

/* Collects n replies from queue 0 (2 s at most). */
static unsigned collect(struct rig *r, struct hbk_dev_reply *out, unsigned n)
{
	unsigned got = 0;
	uint64_t end = now_ms() + 2000;
	while (got < n && now_ms() < end) {
		got += hbk_dev_reap(&r->port, 0, out + got, n - got);
		struct pollfd p = { .fd = hbk_dev_irq_fd(r->dev, 0), .events = POLLIN };
		uint64_t junk;
		if (got < n && poll(&p, 1, 50) == 1 && read(p.fd, &junk, sizeof(junk)) < 0)
			break;
	}
	return got;
}

/* ---- hbk_dev_post against another producer ---------------------------------- */

static struct rig *post_rig;      /* armed: the next REQ_CI read lets another producer in */
static int other_post = 1;        /* what that producer's post returned */

uint32_t __wrap_hbk_dev_read32(struct hbk_dev *dev, uint32_t reg)
{
	if (reg == HBK_DEV_REG_REQ_CI && post_rig) {
		struct rig *r = post_rig;
		post_rig = NULL;
		/* Another producer posts two frames, and the card takes them
		 * (its doorbell fetches them) before this read happens. */
		struct hbk_dev_frame f[2] = { tur(100), tur(101) };
		other_post = hbk_dev_post(&r->port, f, 2);
	}
	return __real_hbk_dev_read32(dev, reg);
}

/*
 * A producer reserves from index 0, and before it looks at REQ_CI another
 * producer posts two frames, which the card takes at once: REQ_CI is 2,
 * past this producer's stale reservation.  The ring is all but empty, so
 * its post goes through (on the next reservation); it is not refused.
 */
static void post_behind_another_producer(void **state)
{
	(void)state;
	struct rig r;
	rig_up(&r, 32, 2);
	struct hbk_dev_frame f = tur(1);
	post_rig = &r;
	int err = hbk_dev_post(&r.port, &f, 1);
	assert_null(post_rig);                  /* the other producer did come in between */
	assert_int_equal(other_post, 0);
	assert_int_equal(err, 0);
	struct hbk_dev_reply rep[3];
	assert_int_equal(collect(&r, rep, 3), 3);
	uint32_t seen = 0;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(rep[i].status, HBK_DEV_ST_OK);
		seen |= rep[i].tag == 1 ? 1u : rep[i].tag == 100 ? 2u : rep[i].tag == 101 ? 4u : 8u;
	}
	assert_int_equal(seen, 7);
	assert_int_equal(hbk_dev_read32(r.dev, HBK_DEV_REG_REQ_CI), 3);
	rig_down(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(post_behind_another_producer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
