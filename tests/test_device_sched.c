/* SPDX-License-Identifier: MIT */
/*
 * The emulated RAID controller under schedules forced at link time: this
 * test is linked with -Wl,--wrap for hbk_dev_read32 (every call from the
 * driver's side, port.c, comes here first) and dev_post_reply (every reply
 * the firmware posts from firmware.c), so it can run another party's step
 * at the one point where a race would have it: another producer posting
 * between a producer's reservation and its look at REQ_CI; the driver
 * reaping a reply and posting more frames between the firmware posting
 * that reply and freeing its context.  Each wrapper does nothing until a
 * test arms it.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hbk/device.h"
#include "tests/lib/testlib.h"
#include "tests/lib/devrig.h"

#define BS 512u
#define MiB (1024u * 1024u)

uint32_t __real_hbk_dev_read32(struct hbk_dev *dev, uint32_t reg);
uint32_t __wrap_hbk_dev_read32(struct hbk_dev *dev, uint32_t reg);
void __real_dev_post_reply(struct hbk_dev *dev, unsigned q, const struct hbk_dev_reply *rep);
void __wrap_dev_post_reply(struct hbk_dev *dev, unsigned q, const struct hbk_dev_reply *rep);

/* One reply queue that interrupts on every reply. */
static void rig_up(struct rig *r, uint32_t credits, uint32_t threads)
{
	rig_up_with(r, credits, 0, threads, true);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* TEST UNIT READY for target t. */
static struct hbk_dev_frame tur_on(uint32_t tag, uint32_t t)
{
	return (struct hbk_dev_frame){ .tag = tag, .function = HBK_DEV_FN_SCSI_IO, .target = t,
				       .cdb_len = 6 };
}

static struct hbk_dev_frame tur(uint32_t tag)
{
	return tur_on(tag, 0);
}

/* READ(16)/WRITE(16) of n blocks at lba of target t into buf. */
static struct hbk_dev_frame rw(uint32_t tag, uint32_t t, bool write, uint64_t lba, uint32_t n,
			       void *buf)
{
	struct hbk_dev_frame f = { .tag = tag, .function = HBK_DEV_FN_SCSI_IO, .target = t,
				   .cdb_len = 16, .dir = write ? HBK_DIR_WRITE : HBK_DIR_READ,
				   .data_addr = (uintptr_t)buf, .data_len = n * BS };
	f.cdb[0] = write ? 0x8a : 0x88;
	for (int i = 0; i < 8; i++)
		f.cdb[2 + i] = (uint8_t)(lba >> (56 - 8 * i));
	for (int i = 0; i < 4; i++)
		f.cdb[10 + i] = (uint8_t)(n >> (24 - 8 * i));
	return f;
}

static struct hbk_dev_frame abort_task(uint32_t tag, uint32_t t, uint32_t abort_tag)
{
	return (struct hbk_dev_frame){ .tag = tag, .function = HBK_DEV_FN_TASK_MGMT,
				       .tm_type = HBK_DEV_TM_ABORT_TASK, .target = t,
				       .tm_tag = abort_tag };
}

static void post(struct rig *r, struct hbk_dev_frame f)
{
	assert_int_equal(hbk_dev_post(&r->port, &f, 1), 0);
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

/* ---- A reply, then its context freed ------------------------------------------ */

static atomic_uint stop_after;    /* armed: the firmware stops after posting this tag's reply */
static sem_t reply_out, reply_go;

void __wrap_dev_post_reply(struct hbk_dev *dev, unsigned q, const struct hbk_dev_reply *rep)
{
	__real_dev_post_reply(dev, q, rep);
	uint32_t tag = atomic_load(&stop_after);
	if (tag && rep->tag == tag) {
		atomic_store(&stop_after, 0);
		sem_post(&reply_out);    /* the driver may reap it now */
		while (sem_wait(&reply_go))
			;  /* EINTR */
	}
}

/* Arms the stop after the reply of `tag`. */
static void stop_after_reply(uint32_t tag)
{
	assert_int_equal(sem_init(&reply_out, 0, 0), 0);
	assert_int_equal(sem_init(&reply_go, 0, 0), 0);
	atomic_store(&stop_after, tag);
}

/* After the test, its firmware gone. */
static void stop_disarmed(void)
{
	sem_destroy(&reply_out);
	sem_destroy(&reply_go);
}

/* Waits (5 s at most) until the firmware stopped after that reply. */
static void reply_is_out(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	int err;
	while ((err = sem_timedwait(&reply_out, &ts)) && errno == EINTR)
		;
	assert_int_equal(err, 0);
}

/* Collects n replies, which must be: tag `write` TERMINATED, tag `tm` OK
 * with one task terminated, and the others GOOD. */
static void expect_replies(struct rig *r, unsigned n, uint32_t write, uint32_t tm)
{
	struct hbk_dev_reply rep[8];
	assert_int_equal(collect(r, rep, n), n);
	for (unsigned i = 0; i < n; i++) {
		if (rep[i].tag == write) {
			assert_int_equal(rep[i].status, HBK_DEV_ST_TERMINATED);
		} else if (rep[i].tag == tm) {
			assert_int_equal(rep[i].status, HBK_DEV_ST_OK);
			assert_int_equal(rep[i].terminated, 1);
		} else {
			assert_int_equal(rep[i].status, HBK_DEV_ST_OK);
			assert_int_equal(rep[i].scsi_status, HBK_STATUS_GOOD);
		}
	}
}

/*
 * One firmware thread, two credits.  A WRITE is held in its volume; a READ
 * replies, and before the thread frees the READ's context the driver reaps
 * that reply and posts a COMPARE AND WRITE and an ABORT TASK for the WRITE,
 * which wait in the ring for a free context.  Freeing it lets both in: the
 * abort cancels the WRITE, and the same thread takes the COMPARE AND WRITE,
 * which waits for that WRITE to end.  The WRITE's end must not wait for a
 * free firmware thread (there is none): every reply comes, with no other
 * doorbell to help it.
 */
static void context_freed_in_a_batch_lets_an_abort_in(void **state)
{
	(void)state;
	struct rig r;
	rig_up(&r, 2, 1);
	assert_int_equal(hbk_dev_vol_mem_hold(r.vol[0], 100), 0);
	post(&r, rw(1, 0, true, 96, 8, r.buf));           /* held */
	stop_after_reply(2);
	post(&r, rw(2, 0, false, 0, 8, r.buf + 4096));    /* after the WRITE, on the one thread */
	reply_is_out();
	struct hbk_dev_reply rep;
	assert_int_equal(hbk_dev_reap(&r.port, 0, &rep, 1), 1);
	assert_int_equal(rep.tag, 2);
	post(&r, caw_frame(3, 0, r.buf + 8192));
	post(&r, abort_task(0x900, 0, 1));
	assert_int_equal(hbk_dev_read32(r.dev, HBK_DEV_REG_REQ_CI), 2);  /* both wait */
	sem_post(&reply_go);
	expect_replies(&r, 3, 1, 0x900);
	rig_down(&r);
	stop_disarmed();
}

struct lifter {
	struct hbk_vol *v;
};

static void *lift_hold(void *arg)
{
	hbk_dev_vol_mem_hold(((struct lifter *)arg)->v, UINT64_MAX);
	return NULL;
}

/*
 * The same outside a firmware thread's batch: one firmware thread, three
 * credits.  A WRITE is held on drive 0, a READ on drive 1, and the thread
 * waits in a COMPARE AND WRITE on drive 0 for the WRITE.  A TEST UNIT
 * READY and an ABORT TASK for the WRITE wait in the ring.  Another thread
 * lifts drive 1's hold: the READ completes there, and the driver reaps its
 * reply before that thread frees its context, which lets both frames in.
 * The abort cancels the WRITE, whose end must not wait for the firmware
 * thread: that thread waits for it.
 */
static void context_freed_outside_a_batch_lets_an_abort_in(void **state)
{
	(void)state;
	struct rig r;
	rig_up(&r, 3, 1);
	assert_int_equal(hbk_dev_vol_mem_hold(r.vol[0], 100), 0);
	assert_int_equal(hbk_dev_vol_mem_hold(r.vol[1], 3), 0);
	post(&r, rw(1, 0, true, 96, 8, r.buf));           /* held */
	post(&r, rw(2, 1, false, 0, 8, r.buf + 4096));    /* held */
	post(&r, caw_frame(3, 0, r.buf + 8192));                /* waits for the WRITE */
	usleep(100000);                                   /* the thread is in it */
	post(&r, tur_on(4, 1));
	post(&r, abort_task(0x900, 0, 1));
	assert_int_equal(hbk_dev_read32(r.dev, HBK_DEV_REG_REQ_CI), 3);  /* both wait */
	stop_after_reply(2);
	struct lifter l = { .v = r.vol[1] };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, lift_hold, &l), 0);
	reply_is_out();
	struct hbk_dev_reply rep;
	assert_int_equal(hbk_dev_reap(&r.port, 0, &rep, 1), 1);
	assert_int_equal(rep.tag, 2);
	sem_post(&reply_go);
	pthread_join(th, NULL);
	expect_replies(&r, 4, 1, 0x900);
	rig_down(&r);
	stop_disarmed();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(post_behind_another_producer),
		cmocka_unit_test(context_freed_in_a_batch_lets_an_abort_in),
		cmocka_unit_test(context_freed_outside_a_batch_lets_an_abort_in),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
