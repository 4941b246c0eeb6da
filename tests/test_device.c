/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the emulated RAID controller through its hardware interface
 * only (registers, request ring, reply queues, eventfd interrupts), with
 * this test as the driver: ring wrap-around, interrupt coalescing by count,
 * by time and retuned at run time, many producers on one doorbell, reply
 * queues that cannot overflow, task management and reset against held I/O,
 * aborts racing the completion of asynchronous READs (one reply each,
 * never two), what LUN RESET and NEXUS LOSS frames do to the LUN's SCSI
 * state, frame checks, SCSI data and sense (volume errors included), and
 * the memory and RAID volumes.
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
#include "hbk/raid.h"
#include "tests/lib/testlib.h"
#include "tests/lib/devrig.h"

#define BS 512u
#define MiB (1024u * 1024u)

/* Three firmware threads, coalescing as the card's defaults. */
static void rig_up(struct rig *r, uint32_t credits, uint32_t queues)
{
	rig_up_with(r, credits, queues, 3, false);
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A frame for tag on target t: READ(16)/WRITE(16) of n blocks at lba into
 * buf, or (buf NULL) TEST UNIT READY. */
static struct hbk_dev_frame frame(uint32_t tag, uint32_t t, bool write, uint64_t lba,
				  uint32_t n, void *buf)
{
	struct hbk_dev_frame f = { .tag = tag, .function = HBK_DEV_FN_SCSI_IO, .target = t,
				   .cdb_len = 6 };
	if (!buf)
		return f;
	f.cdb_len = 16;
	f.cdb[0] = write ? 0x8a : 0x88;
	for (int i = 0; i < 8; i++)
		f.cdb[2 + i] = (uint8_t)(lba >> (56 - 8 * i));
	for (int i = 0; i < 4; i++)
		f.cdb[10 + i] = (uint8_t)(n >> (24 - 8 * i));
	f.dir = write ? HBK_DIR_WRITE : HBK_DIR_READ;
	f.data_addr = (uintptr_t)buf;
	f.data_len = n * BS;
	return f;
}

static struct hbk_dev_frame tm_frame(uint32_t tag, uint8_t type, uint32_t t, uint32_t abort_tag)
{
	return (struct hbk_dev_frame){ .tag = tag, .function = HBK_DEV_FN_TASK_MGMT,
				       .tm_type = type, .target = t, .tm_tag = abort_tag };
}

static void post(struct rig *r, struct hbk_dev_frame f)
{
	assert_int_equal(hbk_dev_post(&r->port, &f, 1), 0);
}

/* Interrupts raised on vector q since the last call (0 if none). */
static uint64_t irqs(struct rig *r, unsigned q)
{
	uint64_t n = 0;
	if (read(hbk_dev_irq_fd(r->dev, q), &n, sizeof(n)) != sizeof(n))
		return 0;
	return n;
}

/* Waits up to ms for vector q to fire; returns whether it did. */
static bool irq_wait(struct rig *r, unsigned q, int ms)
{
	struct pollfd p = { .fd = hbk_dev_irq_fd(r->dev, q), .events = POLLIN };
	return poll(&p, 1, ms) == 1;
}

/* Interrupts on vector q until `want` have come (or 2 s passed), plus any
 * that follow within 20 ms. */
static uint64_t irqs_settle(struct rig *r, unsigned q, uint64_t want)
{
	uint64_t n = 0, end = now_ms() + 2000;
	while (n < want && now_ms() < end && irq_wait(r, q, 100))
		n += irqs(r, q);
	if (irq_wait(r, q, 20))
		n += irqs(r, q);
	return n;
}

/* Waits until queue q has posted `count` replies in all (RQ_PI). */
static void wait_posted(struct rig *r, unsigned q, uint32_t count)
{
	uint64_t end = now_ms() + 5000;
	while (hbk_dev_read32(r->dev, HBK_DEV_REG_RQ_PI(q)) != count && now_ms() < end)
		usleep(200);
	assert_int_equal(hbk_dev_read32(r->dev, HBK_DEV_REG_RQ_PI(q)), count);
}

/* Collects n replies from queue q, sleeping on its interrupt. */
static void collect(struct rig *r, unsigned q, struct hbk_dev_reply *out, unsigned n)
{
	unsigned got = 0;
	uint64_t end = now_ms() + 5000;
	while (got < n && now_ms() < end) {
		got += hbk_dev_reap(&r->port, q, out + got, n - got);
		if (got < n && irq_wait(r, q, 100))
			irqs(r, q);
	}
	assert_int_equal(got, n);
}

static struct hbk_dev_reply one_reply(struct rig *r)
{
	struct hbk_dev_reply rep;
	collect(r, 0, &rep, 1);
	return rep;
}

/* ---- Rings --------------------------------------------------------------------- */

/* 8 ring entries, 600 frames: the free-running indices wrap many times. */
static void ring_wraps_around(void **state)
{
	(void)state;
	struct rig r;
	rig_up(&r, 4, 1);
	assert_int_equal(hbk_dev_read32(r.dev, HBK_DEV_REG_REQ_ENTRIES), 8);
	struct hbk_dev_reply rep[3];
	for (uint32_t i = 0; i < 300; i += 3) {
		struct hbk_dev_frame f[3];
		for (uint32_t k = 0; k < 3; k++) {
			tl_fill(r.buf + k * 4096, i + k, 8, BS, 1);
			f[k] = frame(i + k, 0, true, (i + k) * 8ull, 8, r.buf + k * 4096);
		}
		assert_int_equal(hbk_dev_post(&r.port, f, 3), 0);
		collect(&r, 0, rep, 3);
		for (uint32_t k = 0; k < 3; k++) {
			assert_int_equal(rep[k].status, HBK_DEV_ST_OK);
			assert_int_equal(rep[k].scsi_status, HBK_STATUS_GOOD);
			assert_int_equal(rep[k].residual, 0);
		}
	}
	for (uint32_t i = 0; i < 300; i++) {
		memset(r.buf, 0, 4096);
		post(&r, frame(i, 0, false, i * 8ull, 8, r.buf));
		struct hbk_dev_reply one = one_reply(&r);
		assert_int_equal(one.tag, i);
		assert_true(tl_check(r.buf, i, 8, BS, 1));
	}
	assert_int_equal(hbk_dev_read32(r.dev, HBK_DEV_REG_REQ_CI), 600);
	assert_int_equal(hbk_dev_read32(r.dev, HBK_DEV_REG_RQ_PI(0)), 600);
	rig_down(&r);
}

struct producer {
	struct rig *r;
	uint32_t id, n;
	unsigned seed;
	sem_t *window;                /* frames this test lets be in flight */
	atomic_uint refused;          /* posts that returned an error */
};

static void *produce(void *arg)
{
	struct producer *p = arg;
	for (uint32_t i = 0; i < p->n;) {
		struct hbk_dev_frame f[8];
		uint32_t k = 1 + (unsigned)rand_r(&p->seed) % 8;
		k = k < p->n - i ? k : p->n - i;
		for (uint32_t j = 0; j < k; j++) {
			f[j] = frame(p->id << 16 | (i + j), p->id % 2, false, 0, 0, NULL);
			while (sem_wait(p->window))
				;  /* EINTR */
		}
		if (hbk_dev_post(&p->r->port, f, k))
			atomic_fetch_add(&p->refused, 1);  /* the ring cannot be full: a spurious -EAGAIN */
		i += k;
	}
	return NULL;
}

/* Four threads post through one doorbell while this one reaps: every frame
 * is executed and answered exactly once, and no post is refused.  At most
 * as many frames as the card has credits are in flight (posted, their
 * reply not reaped), half the ring, so the ring always has room: a post
 * that is refused all the same (its producer raced the others and the
 * card) fails the test instead of being retried. */
static void doorbell_with_many_producers(void **state)
{
	(void)state;
	struct rig r;
	rig_up(&r, 64, 1);
	assert_true(hbk_dev_read32(r.dev, HBK_DEV_REG_REQ_ENTRIES) >= 2 * 64);
	enum { P = 4, N = 1500 };
	sem_t window;
	sem_init(&window, 0, 64);
	struct producer p[P];
	pthread_t th[P];
	for (uint32_t i = 0; i < P; i++) {
		p[i] = (struct producer){ .r = &r, .id = i, .n = N, .seed = i + 1, .window = &window };
		assert_int_equal(pthread_create(&th[i], NULL, produce, &p[i]), 0);
	}
	static uint8_t seen[P][N];
	memset(seen, 0, sizeof(seen));
	struct hbk_dev_reply rep[64];
	unsigned total = 0, refused = 0;
	uint64_t end = now_ms() + 10000;
	while (total + refused < P * N && now_ms() < end) {
		unsigned n = hbk_dev_reap(&r.port, 0, rep, 64);
		for (unsigned i = 0; i < n; i++) {
			assert_int_equal(rep[i].status, HBK_DEV_ST_OK);
			assert_true(rep[i].tag >> 16 < P && (rep[i].tag & 0xffff) < N);
			seen[rep[i].tag >> 16][rep[i].tag & 0xffff]++;
			sem_post(&window);
		}
		total += n;
		refused = 0;
		for (uint32_t i = 0; i < P; i++)
			refused += atomic_load(&p[i].refused);
		if (refused)
			break;
		if (!n && irq_wait(&r, 0, 100))
			irqs(&r, 0);
	}
	for (uint32_t i = 0; i < P * N; i++)
		sem_post(&window);   /* producers blocked on a refused post go on */
	refused = 0;
	for (uint32_t i = 0; i < P; i++) {
		pthread_join(th[i], NULL);
		refused += atomic_load(&p[i].refused);
	}
	assert_int_equal(refused, 0);
	assert_int_equal(total, P * N);
	for (uint32_t i = 0; i < P; i++)
		for (uint32_t j = 0; j < N; j++)
			assert_int_equal(seen[i][j], 1);
	assert_int_equal(hbk_dev_read32(r.dev, HBK_DEV_REG_REQ_CI), P * N);
	sem_destroy(&window);
	rig_down(&r);
}

/* A driver that stops reaping stops the firmware taking frames: replies
 * never exceed the credits, however many frames wait in the ring. */
static void reply_queue_cannot_overflow(void **state)
{
	(void)state;
	struct rig r;
	rig_up(&r, 8, 1);
	uint32_t depth = hbk_dev_read32(r.dev, HBK_DEV_REG_RPL_DEPTH);
	assert_true(depth >= 8 + HBK_DEV_TM_SLOTS);
	for (uint32_t i = 0; i < 14; i++)
		post(&r, frame(i, 0, false, 0, 0, NULL));
	wait_posted(&r, 0, 8);
	usleep(20000);
	assert_int_equal(hbk_dev_read32(r.dev, HBK_DEV_REG_RQ_PI(0)), 8);
	assert_int_equal(hbk_dev_read32(r.dev, HBK_DEV_REG_REQ_CI), 8);
	/* 14 posted, 8 taken, 16 entries: no room for 11 more. */
	struct hbk_dev_frame more[11] = { frame(20, 0, false, 0, 0, NULL) };
	assert_int_equal(hbk_dev_post(&r.port, more, 11), -EAGAIN);
	/* Consuming what was never posted is ignored. */
	hbk_dev_write32(r.dev, HBK_DEV_REG_RQ_CI(0), 100);
	assert_int_equal(hbk_dev_read32(r.dev, HBK_DEV_REG_RQ_CI(0)), 0);
	struct hbk_dev_reply rep[14];
	assert_int_equal(hbk_dev_reap(&r.port, 0, rep, 14), 8);
	collect(&r, 0, rep + 8, 6);
	uint32_t seen = 0;  /* each once, in any order: several firmware threads */
	for (uint32_t i = 0; i < 14; i++)
		seen |= 1u << rep[i].tag;
	assert_int_equal(seen, (1u << 14) - 1);
	rig_down(&r);
}

/* ---- Interrupt coalescing --------------------------------------------------------- */

static void coalesce(struct rig *r, uint32_t count, uint32_t usec)
{
	hbk_dev_write32(r->dev, HBK_DEV_REG_IRQ_COUNT(0), count);
	hbk_dev_write32(r->dev, HBK_DEV_REG_IRQ_USEC(0), usec);
}

static void coalescing_by_count(void **state)
{
	(void)state;
	struct rig r;
	rig_up(&r, 64, 1);
	coalesce(&r, 8, 1000000);
	assert_int_equal(hbk_dev_read32(r.dev, HBK_DEV_REG_IRQ_COUNT(0)), 8);
	for (uint32_t i = 0; i < 7; i++)
		post(&r, frame(i, 0, false, 0, 0, NULL));
	wait_posted(&r, 0, 7);
	assert_false(irq_wait(&r, 0, 20));
	post(&r, frame(7, 0, false, 0, 0, NULL));
	assert_true(irq_wait(&r, 0, 2000));
	assert_int_equal(irqs(&r, 0), 1);
	for (uint32_t i = 8; i < 24; i++)
		post(&r, frame(i, 0, false, 0, 0, NULL));
	wait_posted(&r, 0, 24);
	assert_int_equal(irqs_settle(&r, 0, 2), 2);
	rig_down(&r);
}

static void coalescing_by_time(void **state)
{
	(void)state;
	struct rig r;
	rig_up(&r, 64, 1);
	coalesce(&r, 32, 50000);
	uint64_t t0 = now_ms();
	post(&r, frame(1, 0, false, 0, 0, NULL));
	wait_posted(&r, 0, 1);
	assert_true(irq_wait(&r, 0, 2000));
	uint64_t waited = now_ms() - t0;
	assert_true(waited >= 49);   /* the reply was posted after t0 */
	assert_int_equal(irqs(&r, 0), 1);
	rig_down(&r);
}

static void coalescing_changes_at_run_time(void **state)
{
	(void)state;
	struct rig r;
	rig_up(&r, 64, 1);
	coalesce(&r, 64, 1000000);
	for (uint32_t i = 0; i < 3; i++)
		post(&r, frame(i, 0, false, 0, 0, NULL));
	wait_posted(&r, 0, 3);
	assert_false(irq_wait(&r, 0, 20));
	/* Three are pending: a count of 2 makes them due at once. */
	hbk_dev_write32(r.dev, HBK_DEV_REG_IRQ_COUNT(0), 2);
	assert_true(irq_wait(&r, 0, 0));
	assert_int_equal(irqs(&r, 0), 1);
	/* No time limit: every reply interrupts. */
	hbk_dev_write32(r.dev, HBK_DEV_REG_IRQ_USEC(0), 0);
	for (uint32_t i = 3; i < 8; i++) {
		post(&r, frame(i, 0, false, 0, 0, NULL));
		wait_posted(&r, 0, i + 1);
	}
	assert_int_equal(irqs_settle(&r, 0, 5), 5);
	/* A long time limit, then a short one: the pending reply fires. */
	coalesce(&r, 64, 1000000);
	post(&r, frame(8, 0, false, 0, 0, NULL));
	wait_posted(&r, 0, 9);
	assert_false(irq_wait(&r, 0, 20));
	hbk_dev_write32(r.dev, HBK_DEV_REG_IRQ_USEC(0), 1000);
	assert_true(irq_wait(&r, 0, 2000));
	assert_int_equal(irqs(&r, 0), 1);
	rig_down(&r);
}

/* IRQ_FLAGS IDLE: a reply that leaves nothing in flight fires at once,
 * count and time aside; replies while another command is still in flight
 * wait for them as before. */
static void coalescing_fires_when_the_card_goes_idle(void **state)
{
	(void)state;
	struct rig r;
	rig_up(&r, 64, 1);
	coalesce(&r, 32, 1000000);
	hbk_dev_write32(r.dev, HBK_DEV_REG_IRQ_FLAGS(0), HBK_DEV_IRQ_IDLE | 0x80);
	assert_int_equal(hbk_dev_read32(r.dev, HBK_DEV_REG_IRQ_FLAGS(0)), HBK_DEV_IRQ_IDLE);
	post(&r, frame(1, 0, false, 0, 0, NULL));
	assert_true(irq_wait(&r, 0, 500));        /* long before the 1 s limit */
	assert_int_equal(irqs(&r, 0), 1);
	/* A write held at LBA 100 stays in flight: the reads that pass it
	 * leave the card busy, so they coalesce. */
	assert_int_equal(hbk_dev_vol_mem_hold(r.vol[0], 100), 0);
	post(&r, frame(2, 0, true, 96, 8, r.buf));
	for (uint32_t i = 3; i < 6; i++)
		post(&r, frame(i, 0, false, 0, 8, r.buf + 4096 * i));
	wait_posted(&r, 0, 4);
	assert_false(irq_wait(&r, 0, 50));
	/* Aborting the held write ends it: the card goes idle and fires. */
	post(&r, tm_frame(900, HBK_DEV_TM_ABORT_TASK, 0, 2));
	wait_posted(&r, 0, 6);
	assert_true(irq_wait(&r, 0, 500));
	/* Without the flag a lone reply waits for the time limit again. */
	hbk_dev_write32(r.dev, HBK_DEV_REG_IRQ_FLAGS(0), 0);
	irqs(&r, 0);
	post(&r, frame(7, 0, false, 0, 0, NULL));
	wait_posted(&r, 0, 7);
	assert_false(irq_wait(&r, 0, 50));
	/* Turning the flag on with that reply pending and the card idle
	 * fires at once, as a write to IRQ_COUNT or IRQ_USEC would. */
	hbk_dev_write32(r.dev, HBK_DEV_REG_IRQ_FLAGS(0), HBK_DEV_IRQ_IDLE);
	assert_true(irq_wait(&r, 0, 0));
	rig_down(&r);
}

/* The card going idle fires every queue holding replies, not only the one
 * whose reply emptied it: the others would wait out IRQ_USEC for nothing. */
static void idle_fires_every_queue_with_replies(void **state)
{
	(void)state;
	struct rig r;
	rig_up(&r, 64, 2);
	/* Queue 0 fires on every reply, so its replies never wake the
	 * coalescing timer; queue 1 waits for 32, 1 s or IDLE. */
	for (unsigned q = 0; q < 2; q++) {
		hbk_dev_write32(r.dev, HBK_DEV_REG_IRQ_COUNT(q), q ? 32 : 1);
		hbk_dev_write32(r.dev, HBK_DEV_REG_IRQ_USEC(q), 1000000);
		hbk_dev_write32(r.dev, HBK_DEV_REG_IRQ_FLAGS(q), HBK_DEV_IRQ_IDLE);
	}
	/* A write held on queue 0 keeps the card busy while reads reply on
	 * queue 1. */
	assert_int_equal(hbk_dev_vol_mem_hold(r.vol[0], 100), 0);
	post(&r, frame(1, 0, true, 96, 8, r.buf));
	for (uint32_t i = 2; i < 5; i++) {
		struct hbk_dev_frame f = frame(i, 0, false, 0, 8, r.buf + 4096 * i);
		f.reply_queue = 1;
		post(&r, f);
	}
	wait_posted(&r, 1, 3);
	assert_false(irq_wait(&r, 1, 50));
	/* The abort's replies go to queue 0 and leave the card idle: both
	 * vectors fire, long before the 1 s limit. */
	post(&r, tm_frame(900, HBK_DEV_TM_ABORT_TASK, 0, 1));
	wait_posted(&r, 0, 2);
	assert_true(irq_wait(&r, 0, 500));
	assert_true(irq_wait(&r, 1, 500));
	rig_down(&r);
}

/* Each reply lands on the queue its frame named and raises that vector. */
static void replies_go_to_the_named_queue(void **state)
{
	(void)state;
	struct rig r;
	rig_up(&r, 16, 2);
	assert_int_equal(r.port.nqueues, 2);
	for (uint32_t i = 0; i < 6; i++) {
		struct hbk_dev_frame f = frame(i, 0, false, 0, 0, NULL);
		f.reply_queue = (uint8_t)(i % 2);
		post(&r, f);
	}
	struct hbk_dev_reply rep[3];
	for (unsigned q = 0; q < 2; q++) {
		collect(&r, q, rep, 3);
		for (unsigned i = 0; i < 3; i++)
			assert_int_equal(rep[i].tag % 2, q);
	}
	rig_down(&r);
}

/* ---- Task management and reset ------------------------------------------------------ */

static void abort_task_terminates_a_held_io(void **state)
{
	(void)state;
	struct rig r;
	rig_up(&r, 16, 1);
	assert_int_equal(hbk_dev_vol_mem_hold(r.vol[0], 100), 0);
	post(&r, frame(1, 0, true, 96, 8, r.buf));
	post(&r, frame(2, 0, false, 0, 8, r.buf + 4096));
	assert_int_equal(one_reply(&r).tag, 2);   /* the other I/O goes past it */
	usleep(20000);
	assert_int_equal(hbk_dev_read32(r.dev, HBK_DEV_REG_RQ_PI(0)), 1);
	post(&r, tm_frame(900, HBK_DEV_TM_ABORT_TASK, 0, 1));
	struct hbk_dev_reply rep[2];
	collect(&r, 0, rep, 2);
	assert_int_equal(rep[0].tag, 1);          /* the task's reply comes first */
	assert_int_equal(rep[0].status, HBK_DEV_ST_TERMINATED);
	assert_int_equal(rep[1].tag, 900);
	assert_int_equal(rep[1].function, HBK_DEV_FN_TASK_MGMT);
	assert_int_equal(rep[1].status, HBK_DEV_ST_OK);
	assert_int_equal(rep[1].terminated, 1);
	/* A task that is not there: done, nothing terminated. */
	post(&r, tm_frame(901, HBK_DEV_TM_ABORT_TASK, 0, 1));
	struct hbk_dev_reply none = one_reply(&r);
	assert_int_equal(none.status, HBK_DEV_ST_OK);
	assert_int_equal(none.terminated, 0);
	rig_down(&r);
}

/* Firmware threads waiting inside COMPARE AND WRITE (for a write in flight
 * on their LUN) are not running: a READ for another drive still gets a
 * thread; and when task management aborts the write they wait for, its
 * end does not need a free firmware thread. */
static void waiting_caws_hold_up_nothing(void **state)
{
	(void)state;
	struct rig r;
	rig_up(&r, 16, 1);                        /* 3 firmware threads */
	memset(r.buf, 0, 64 * 4096);
	assert_int_equal(hbk_dev_vol_mem_hold(r.vol[0], 100), 0);
	post(&r, frame(1, 0, true, 96, 8, r.buf));
	usleep(20000);
	post(&r, caw_frame(10, 0, r.buf + 4096));
	post(&r, caw_frame(11, 0, r.buf + 8192));   /* two threads wait */
	usleep(50000);
	post(&r, frame(2, 1, false, 0, 8, r.buf + 16384));
	struct hbk_dev_reply rep = one_reply(&r);
	assert_int_equal(rep.tag, 2);
	assert_int_equal(rep.scsi_status, HBK_STATUS_GOOD);
	post(&r, caw_frame(12, 0, r.buf + 12288));  /* and now every one */
	usleep(50000);
	post(&r, tm_frame(900, HBK_DEV_TM_ABORT_TASK, 0, 1));
	struct hbk_dev_reply reps[5];
	collect(&r, 0, reps, 5);
	unsigned good_caws = 0;
	for (int i = 0; i < 5; i++) {
		if (reps[i].tag == 1)
			assert_int_equal(reps[i].status, HBK_DEV_ST_TERMINATED);
		else if (reps[i].tag == 900)
			assert_int_equal(reps[i].status, HBK_DEV_ST_OK);
		else
			good_caws += reps[i].tag >= 10 && reps[i].tag <= 12 &&
				     reps[i].scsi_status == HBK_STATUS_GOOD;
	}
	assert_int_equal(good_caws, 3);
	rig_down(&r);
}

static void resets_end_only_what_they_name(void **state)
{
	(void)state;
	struct rig r;
	rig_up(&r, 16, 1);
	for (int t = 0; t < 2; t++)
		assert_int_equal(hbk_dev_vol_mem_hold(r.vol[t], 7), 0);
	post(&r, frame(1, 0, false, 0, 8, r.buf));
	post(&r, frame(2, 1, false, 0, 8, r.buf + 4096));
	post(&r, frame(3, 1, false, 4, 8, r.buf + 8192));
	assert_false(irq_wait(&r, 0, 20));
	struct hbk_dev_reply rep[3];
	post(&r, tm_frame(900, HBK_DEV_TM_LUN_RESET, 0, 0));
	collect(&r, 0, rep, 2);
	assert_int_equal(rep[0].tag, 1);
	assert_int_equal(rep[1].terminated, 1);
	post(&r, tm_frame(901, HBK_DEV_TM_TARGET_RESET, 1, 0));
	collect(&r, 0, rep, 3);
	assert_int_equal(rep[0].status, HBK_DEV_ST_TERMINATED);
	assert_int_equal(rep[1].status, HBK_DEV_ST_TERMINATED);
	assert_int_equal(rep[2].tag, 901);
	assert_int_equal(rep[2].terminated, 2);
	post(&r, tm_frame(902, HBK_DEV_TM_TARGET_RESET, 9, 0));
	assert_int_equal(one_reply(&r).status, HBK_DEV_ST_NO_TARGET);
	post(&r, tm_frame(903, 77, 0, 0));
	assert_int_equal(one_reply(&r).status, HBK_DEV_ST_INVALID_FRAME);
	rig_down(&r);
}

static void reset_discards_work_in_flight(void **state)
{
	(void)state;
	struct rig r;
	rig_up(&r, 16, 1);
	assert_int_equal(hbk_dev_vol_mem_hold(r.vol[0], 0), 0);
	post(&r, frame(1, 0, false, 0, 8, r.buf));
	post(&r, frame(2, 0, false, 0, 8, r.buf));
	assert_false(irq_wait(&r, 0, 20));
	hbk_dev_write32(r.dev, HBK_DEV_REG_CONTROL, HBK_DEV_CTL_RESET);
	assert_int_equal(hbk_dev_read32(r.dev, HBK_DEV_REG_STATUS), HBK_DEV_READY);
	assert_int_equal(hbk_dev_read32(r.dev, HBK_DEV_REG_REQ_CI), 0);
	assert_int_equal(hbk_dev_read32(r.dev, HBK_DEV_REG_RQ_PI(0)), 0);
	assert_false(irq_wait(&r, 0, 0));
	/* Frames wait while the device is READY; enabling takes them. */
	assert_int_equal(hbk_dev_port_init(&r.port, r.dev), 0);
	post(&r, frame(3, 0, false, 8, 8, r.buf));
	usleep(10000);
	assert_int_equal(hbk_dev_read32(r.dev, HBK_DEV_REG_REQ_CI), 0);
	hbk_dev_write32(r.dev, HBK_DEV_REG_CONTROL, HBK_DEV_CTL_ENABLE);
	struct hbk_dev_reply rep = one_reply(&r);
	assert_int_equal(rep.tag, 3);
	assert_int_equal(rep.status, HBK_DEV_ST_OK);
	rig_down(&r);
}

struct lifter {
	struct hbk_vol *v;
	pthread_barrier_t *go;
};

static void *lift_hold(void *arg)
{
	struct lifter *l = arg;
	pthread_barrier_wait(l->go);
	hbk_dev_vol_mem_hold(l->v, UINT64_MAX);  /* the held READ completes on this thread */
	return NULL;
}

/*
 * An asynchronous READ held by its volume, its hold lifted by one thread
 * while ABORT TASK for it arrives from this one: whichever wins, the task
 * gets exactly one reply, OK or TERMINATED, before the abort's reply, and
 * the abort counts it terminated exactly when its reply says so.
 */
static void abort_races_async_completion(void **state)
{
	(void)state;
	struct rig r;
	rig_up(&r, 16, 1);
	enum { ROUNDS = 200 };
	unsigned terminated = 0, completed = 0;
	pthread_barrier_t go;
	pthread_barrier_init(&go, NULL, 2);
	for (uint32_t i = 0; i < ROUNDS; i++) {
		struct lifter l = { .v = r.vol[0], .go = &go };
		pthread_t th;
		assert_int_equal(hbk_dev_vol_mem_hold(r.vol[0], 3), 0);
		post(&r, frame(i, 0, false, 0, 8, r.buf));
		assert_int_equal(pthread_create(&th, NULL, lift_hold, &l), 0);
		pthread_barrier_wait(&go);
		post(&r, tm_frame(0x8000 | i, HBK_DEV_TM_ABORT_TASK, 0, i));
		pthread_join(th, NULL);
		struct hbk_dev_reply rep[2];
		collect(&r, 0, rep, 2);
		assert_int_equal(rep[0].tag, i);                 /* the task first */
		assert_int_equal(rep[1].tag, 0x8000 | i);
		assert_int_equal(rep[1].status, HBK_DEV_ST_OK);
		bool term = rep[0].status == HBK_DEV_ST_TERMINATED;
		assert_true(term || (rep[0].status == HBK_DEV_ST_OK &&
				     rep[0].scsi_status == HBK_STATUS_GOOD));
		assert_int_equal(rep[1].terminated, term);
		terminated += term;
		completed += !term;
	}
	/* Nothing more comes: a last command's reply is the next one. */
	post(&r, frame(7777, 1, false, 0, 0, NULL));
	struct hbk_dev_reply last = one_reply(&r);
	assert_int_equal(last.tag, 7777);
	assert_int_equal(hbk_dev_read32(r.dev, HBK_DEV_REG_RQ_PI(0)), 2 * ROUNDS + 1);
	assert_int_equal(terminated + completed, ROUNDS);
	pthread_barrier_destroy(&go);
	rig_down(&r);
}

/* ---- Frames, SCSI and volumes ---------------------------------------------------------- */

static void frames_are_checked(void **state)
{
	(void)state;
	struct rig r;
	rig_up(&r, 16, 1);
	struct hbk_dev_frame bad[5] = {
		frame(1, 5, false, 0, 8, r.buf),           /* no such target */
		frame(2, 0, false, 0, 8, r.buf + 512),     /* misaligned data */
		frame(3, 0, false, 0, 8, r.buf),
		frame(4, 0, false, 0, 8, r.buf),
		frame(8, 0, true, 0, 8, r.buf),            /* a function the card has not */
	};
	bad[2].data_len = hbk_dev_read32(r.dev, HBK_DEV_REG_MAX_XFER) + 4096;
	bad[3].cdb_len = 7;
	bad[4].function = 0;
	memset(r.buf, 0x5a, 8 * BS);
	assert_int_equal(hbk_dev_post(&r.port, bad, 5), 0);
	struct hbk_dev_reply rep[5];
	collect(&r, 0, rep, 5);
	for (int i = 0; i < 5; i++)  /* in any order: several firmware threads */
		assert_int_equal(rep[i].status, rep[i].tag == 1 ? HBK_DEV_ST_NO_TARGET
								 : HBK_DEV_ST_INVALID_FRAME);
	post(&r, frame(9, 0, false, 0, 8, r.buf));   /* the WRITE of function 0 did nothing */
	assert_int_equal(one_reply(&r).scsi_status, HBK_STATUS_GOOD);
	for (unsigned i = 0; i < 8 * BS; i++)
		assert_int_equal(r.buf[i], 0);
	/* READ past the end: the emulation's CHECK CONDITION comes back whole. */
	post(&r, frame(5, 0, false, 4 * MiB / BS, 1, r.buf));
	struct hbk_dev_reply cc = one_reply(&r);
	assert_int_equal(cc.status, HBK_DEV_ST_OK);
	assert_int_equal(cc.scsi_status, HBK_STATUS_CHECK_CONDITION);
	assert_int_equal(cc.sense_len, 18);
	assert_int_equal(cc.sense[2] & 0xf, HBK_SK_ILLEGAL_REQUEST);
	assert_int_equal(cc.sense[12], 0x21);
	assert_int_equal(cc.residual, BS);
	/* INQUIRY: the virtual drive's identity, DMAed to the frame's address. */
	struct hbk_dev_frame inq = { .tag = 6, .function = HBK_DEV_FN_SCSI_IO, .target = 1,
				     .cdb = { 0x12, 0, 0, 0, 96 }, .cdb_len = 6, .dir = HBK_DIR_READ,
				     .data_addr = (uintptr_t)r.buf, .data_len = 96 };
	post(&r, inq);
	struct hbk_dev_reply ok = one_reply(&r);
	assert_int_equal(ok.scsi_status, HBK_STATUS_GOOD);
	assert_true(ok.residual < 96);
	assert_memory_equal(r.buf + 8, "HBAKIT  VIRTUAL DRIVE", 21);
	rig_down(&r);
}

static void vio_done(struct hbk_vol_io *io, int result)
{
	*(int *)io->priv = result;
}

/* Submits io (op, lba, n, buf); returns its result (1: not done yet). */
static int vol_submit(struct hbk_vol *v, struct hbk_vol_io *io, int *result,
		      uint8_t op, uint64_t lba, uint64_t n, void *buf)
{
	*result = 1;
	*io = (struct hbk_vol_io){ .op = op, .lba = lba, .nblocks = n, .buf = buf,
				   .done = vio_done, .priv = result };
	v->ops->submit(v, io);
	return *result;  /* memory volumes complete inline */
}

static int vol_rw(struct hbk_vol *v, uint8_t op, uint64_t lba, uint64_t n, void *buf)
{
	struct hbk_vol_io io;
	int result;
	return vol_submit(v, &io, &result, op, lba, n, buf);
}

static void memory_volume_is_thin(void **state)
{
	(void)state;
	struct hbk_vol *v;
	assert_int_equal(hbk_dev_vol_mem("thin", 1 * MiB, BS, &v), 0);
	assert_true(v->flags & HBK_VOL_THIN && v->flags & HBK_VOL_LBPRZ);
	uint8_t buf[16 * BS];
	tl_fill(buf, 0, 16, BS, 4);
	assert_int_equal(vol_rw(v, HBK_VOL_WRITE, 0, 16, buf), 0);
	assert_int_equal(vol_rw(v, HBK_VOL_UNMAP, 4, 8, NULL), 0);
	uint32_t n = 100;
	bool mapped;
	assert_int_equal(v->ops->lba_status(v, 0, &n, &mapped), 0);
	assert_true(mapped);
	assert_int_equal(n, 4);
	n = 100;
	assert_int_equal(v->ops->lba_status(v, 4, &n, &mapped), 0);
	assert_false(mapped);
	assert_int_equal(n, 8);
	assert_int_equal(vol_rw(v, HBK_VOL_READ, 0, 16, buf), 0);
	assert_true(tl_check(buf, 0, 4, BS, 4));
	assert_true(tl_check(buf + 12 * BS, 12, 4, BS, 4));
	for (unsigned i = 4 * BS; i < 12 * BS; i++)
		assert_int_equal(buf[i], 0);
	assert_int_equal(vol_rw(v, HBK_VOL_READ, 2047, 2, buf), -EINVAL);
	/* A held I/O is neither done nor failed until it is cancelled. */
	assert_int_equal(hbk_dev_vol_mem_hold(v, 3), 0);
	struct hbk_vol_io io;
	int result;
	assert_int_equal(vol_submit(v, &io, &result, HBK_VOL_READ, 0, 8, buf), 1);
	assert_int_equal(vol_rw(v, HBK_VOL_READ, 4, 8, buf), 0);
	assert_int_equal(v->ops->cancel(v, &io), 0);
	assert_int_equal(result, -ECANCELED);
	assert_int_equal(v->ops->cancel(v, &io), -ENOENT);
	hbk_dev_vol_close(v);
}

/* A volume error comes back as the emulation's sense: a RAID 0 whose
 * member fails every I/O answers READ with MEDIUM ERROR, through the
 * asynchronous path. */
/* A no-data command as initiator `it`: the reply's SCSI status and ASC/ASCQ. */
static struct hbk_dev_reply cmd6(struct rig *r, uint32_t tag, uint64_t it, uint8_t op)
{
	struct hbk_dev_frame f = { .tag = tag, .function = HBK_DEV_FN_SCSI_IO, .target = 0,
				   .cdb_len = 6, .dir = HBK_DIR_NONE, .initiator = it };
	f.cdb[0] = op;
	post(r, f);
	return one_reply(r);
}

/* LUN RESET and NEXUS LOSS frames reset the SCSI state of the virtual
 * drive's LUN once they are done: RESERVE(6) ends, a unit attention waits
 * for every nexus that used the LUN (not for one that had ended). */
static void task_management_resets_scsi_state(void **state)
{
	(void)state;
	struct rig r;
	rig_up(&r, 16, 1);
	assert_int_equal(cmd6(&r, 1, 0xa, 0x16).scsi_status, HBK_STATUS_GOOD);   /* A: RESERVE(6) */
	assert_int_equal(cmd6(&r, 2, 0xb, 0x00).scsi_status, HBK_STATUS_RESERVATION_CONFLICT);
	struct hbk_dev_frame loss = tm_frame(3, HBK_DEV_TM_NEXUS_LOSS, 0, 0);
	loss.initiator = 0xa;
	post(&r, loss);
	assert_int_equal(one_reply(&r).status, HBK_DEV_ST_OK);
	assert_int_equal(cmd6(&r, 4, 0xb, 0x00).scsi_status, HBK_STATUS_GOOD);   /* A's is gone */
	assert_int_equal(cmd6(&r, 5, 0xb, 0x16).scsi_status, HBK_STATUS_GOOD);   /* B: RESERVE(6) */
	post(&r, tm_frame(6, HBK_DEV_TM_LUN_RESET, 0, 0));
	assert_int_equal(one_reply(&r).status, HBK_DEV_ST_OK);
	struct hbk_dev_reply rep = cmd6(&r, 7, 0xb, 0x00);
	assert_int_equal(rep.scsi_status, HBK_STATUS_CHECK_CONDITION);
	assert_int_equal(rep.sense[2] & 0xf, HBK_SK_UNIT_ATTENTION);
	assert_int_equal(rep.sense[12], 0x29);                                   /* BUS DEVICE RESET */
	assert_int_equal(rep.sense[13], 0x03);
	assert_int_equal(cmd6(&r, 8, 0xa, 0x00).scsi_status, HBK_STATUS_GOOD);   /* A had ended */
	assert_int_equal(cmd6(&r, 9, 0xa, 0x16).scsi_status, HBK_STATUS_GOOD);   /* B's ended too */
	rig_down(&r);
}

static void volume_errors_become_sense(void **state)
{
	(void)state;
	struct hbk_disk *disk[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(hbk_disk_open_mem(4 * MiB, &disk[i]), 0);
	struct hbk_raid_config rc = { .level = HBK_RAID0, .chunk = 64 * 1024 };
	struct hbk_raid *raid;
	assert_int_equal(hbk_raid_create(&rc, disk, 2, NULL, &raid), 0);
	struct hbk_vol *v;
	assert_int_equal(hbk_dev_vol_raid("stripe", raid, &v), 0);
	struct hbk_dev *dev;
	struct hbk_dev_config cfg = { .vols = &v, .nvols = 1, .credits = 16 };
	assert_int_equal(hbk_dev_create(&cfg, &dev), 0);
	struct rig r = { .dev = dev };
	assert_int_equal(hbk_dev_port_init(&r.port, dev), 0);
	hbk_dev_write32(dev, HBK_DEV_REG_CONTROL, HBK_DEV_CTL_ENABLE);
	assert_int_equal(posix_memalign((void **)&r.buf, 4096, 64 * 4096), 0);
	post(&r, frame(1, 0, false, 0, 8, r.buf));
	assert_int_equal(one_reply(&r).scsi_status, HBK_STATUS_GOOD);
	hbk_disk_inject(disk[0], &(struct hbk_disk_fault){ .fail_all = true });
	post(&r, frame(2, 0, false, 0, 8, r.buf));       /* chunk 0: on the failing member */
	struct hbk_dev_reply rep = one_reply(&r);
	assert_int_equal(rep.status, HBK_DEV_ST_OK);
	assert_int_equal(rep.scsi_status, HBK_STATUS_CHECK_CONDITION);
	assert_int_equal(rep.sense_len, 18);
	assert_int_equal(rep.sense[2] & 0xf, HBK_SK_MEDIUM_ERROR);
	assert_int_equal(rep.sense[12], 0x11);            /* UNRECOVERED READ ERROR */
	assert_int_equal(rep.residual, 8 * BS);
	hbk_disk_inject(disk[0], NULL);
	hbk_dev_destroy(dev);
	hbk_dev_vol_close(v);
	hbk_raid_close(raid);
	for (int i = 0; i < 2; i++)
		hbk_disk_close(disk[i]);
	free(r.buf);
}

/* A card whose one virtual drive is a RAID 1 of two memory disks. */
struct mirror {
	struct hbk_disk *disk[2];
	struct hbk_raid *raid;
	struct hbk_vol *v;
	struct rig r;
};

static void mirror_up(struct mirror *m, uint32_t credits)
{
	memset(m, 0, sizeof(*m));
	for (int i = 0; i < 2; i++)
		assert_int_equal(hbk_disk_open_mem(4 * MiB, &m->disk[i]), 0);
	struct hbk_raid_config rc = { .level = HBK_RAID1, .chunk = 64 * 1024, .assume_clean = true };
	assert_int_equal(hbk_raid_create(&rc, m->disk, 2, NULL, &m->raid), 0);
	assert_int_equal(hbk_dev_vol_raid("mirror", m->raid, &m->v), 0);
	struct hbk_dev_config cfg = { .vols = &m->v, .nvols = 1, .credits = credits };
	assert_int_equal(hbk_dev_create(&cfg, &m->r.dev), 0);
	assert_int_equal(hbk_dev_port_init(&m->r.port, m->r.dev), 0);
	hbk_dev_write32(m->r.dev, HBK_DEV_REG_CONTROL, HBK_DEV_CTL_ENABLE);
	assert_int_equal(posix_memalign((void **)&m->r.buf, 4096, 64 * 4096), 0);
}

static void mirror_down(struct mirror *m)
{
	hbk_dev_destroy(m->r.dev);
	hbk_dev_vol_close(m->v);
	hbk_raid_close(m->raid);
	for (int i = 0; i < 2; i++)
		hbk_disk_close(m->disk[i]);
	free(m->r.buf);
}

/* A RAID 1 of two memory disks behind the controller as a virtual drive. */
static void raid_array_serves_a_virtual_drive(void **state)
{
	(void)state;
	struct mirror m;
	mirror_up(&m, 32);
	struct rig *r = &m.r;
	struct hbk_raid_status st;
	hbk_raid_status(m.raid, &st);
	assert_int_equal(m.v->nblocks * m.v->block_size, st.size);
	struct hbk_dev_frame f[16];
	for (uint32_t i = 0; i < 16; i++) {
		tl_fill(r->buf + i * 16384, i * 32, 32, BS, 9);
		f[i] = frame(i, 0, true, i * 32ull, 32, r->buf + i * 16384);
	}
	assert_int_equal(hbk_dev_post(&r->port, f, 16), 0);
	struct hbk_dev_reply rep[16];
	collect(r, 0, rep, 16);
	memset(r->buf, 0, 64 * 4096);
	for (uint32_t i = 0; i < 16; i++) {
		assert_int_equal(rep[i].scsi_status, HBK_STATUS_GOOD);
		f[i] = frame(i, 0, false, i * 32ull, 32, r->buf + i * 16384);
	}
	assert_int_equal(hbk_dev_post(&r->port, f, 16), 0);
	collect(r, 0, rep, 16);
	for (uint32_t i = 0; i < 16; i++)
		assert_true(tl_check(r->buf + i * 16384, i * 32, 32, BS, 9));
	mirror_down(&m);
}

/* A virtual drive without a controller cache whose host turns WCE on:
 * its writes may sit in the members' caches, so SYNCHRONIZE CACHE must
 * flush the members. */
static void sync_cache_reaches_the_members(void **state)
{
	(void)state;
	struct mirror m;
	mirror_up(&m, 8);
	struct rig *r = &m.r;
	/* MODE SELECT(6): the caching page with WCE set. */
	struct hbk_dev_frame f = { .tag = 1, .function = HBK_DEV_FN_SCSI_IO, .cdb_len = 6,
				   .dir = HBK_DIR_WRITE, .data_addr = (uintptr_t)r->buf, .data_len = 24 };
	f.cdb[0] = 0x15;
	f.cdb[1] = 0x10;
	f.cdb[4] = 24;
	memset(r->buf, 0, 24);
	r->buf[4] = 0x08;
	r->buf[5] = 0x12;
	r->buf[6] = 0x04;
	post(r, f);
	assert_int_equal(one_reply(r).scsi_status, HBK_STATUS_GOOD);
	struct hbk_disk_stats before[2], after[2];
	for (int i = 0; i < 2; i++)
		hbk_disk_stats(m.disk[i], &before[i]);
	tl_fill(r->buf, 8, 8, BS, 3);
	post(r, frame(2, 0, true, 8, 8, r->buf));
	assert_int_equal(one_reply(r).scsi_status, HBK_STATUS_GOOD);
	struct hbk_dev_frame sc = { .tag = 4, .function = HBK_DEV_FN_SCSI_IO, .cdb_len = 10,
				    .dir = HBK_DIR_NONE };
	sc.cdb[0] = 0x35;                               /* SYNCHRONIZE CACHE(10) */
	post(r, sc);
	assert_int_equal(one_reply(r).scsi_status, HBK_STATUS_GOOD);
	for (int i = 0; i < 2; i++) {
		hbk_disk_stats(m.disk[i], &after[i]);
		assert_true(after[i].writes > before[i].writes);
		assert_true(after[i].flushes > before[i].flushes);
	}
	mirror_down(&m);
}

static void bad_configurations_are_refused(void **state)
{
	(void)state;
	struct hbk_vol *v;
	assert_int_equal(hbk_dev_vol_mem("x", 1 * MiB, 1000, &v), -EINVAL);
	assert_int_equal(hbk_dev_vol_mem("x", 100, BS, &v), -EINVAL);
	assert_int_equal(hbk_dev_vol_mem("x", 1 * MiB, BS, &v), 0);
	struct hbk_dev *dev;
	struct hbk_dev_config none = { .vols = &v, .nvols = 0 };
	assert_int_equal(hbk_dev_create(&none, &dev), -EINVAL);
	struct hbk_dev_config odd = { .vols = &v, .nvols = 1, .max_transfer = 1000 };
	assert_int_equal(hbk_dev_create(&odd, &dev), -EINVAL);
	struct hbk_dev_config many = { .vols = &v, .nvols = 1, .queues = HBK_DEV_MAX_QUEUES + 1 };
	assert_int_equal(hbk_dev_create(&many, &dev), -EINVAL);
	assert_null(dev);
	hbk_dev_vol_close(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ring_wraps_around),
		cmocka_unit_test(doorbell_with_many_producers),
		cmocka_unit_test(reply_queue_cannot_overflow),
		cmocka_unit_test(coalescing_by_count),
		cmocka_unit_test(coalescing_by_time),
		cmocka_unit_test(coalescing_changes_at_run_time),
		cmocka_unit_test(coalescing_fires_when_the_card_goes_idle),
		cmocka_unit_test(idle_fires_every_queue_with_replies),
		cmocka_unit_test(replies_go_to_the_named_queue),
		cmocka_unit_test(abort_task_terminates_a_held_io),
		cmocka_unit_test(waiting_caws_hold_up_nothing),
		cmocka_unit_test(resets_end_only_what_they_name),
		cmocka_unit_test(reset_discards_work_in_flight),
		cmocka_unit_test(abort_races_async_completion),
		cmocka_unit_test(frames_are_checked),
		cmocka_unit_test(memory_volume_is_thin),
		cmocka_unit_test(task_management_resets_scsi_state),
		cmocka_unit_test(volume_errors_become_sense),
		cmocka_unit_test(raid_array_serves_a_virtual_drive),
		cmocka_unit_test(sync_cache_reaches_the_members),
		cmocka_unit_test(bad_configurations_are_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
