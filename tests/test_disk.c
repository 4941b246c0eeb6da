/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the disk layer: the memory, null, file (io_uring, O_DIRECT
 * and its buffered fallback) and NBD (against `nbdkit memory` on a Unix
 * socket) backends, request validation, bounce buffers, injected faults
 * (fail all, fail mid-write, dropped writes), batched submission of the
 * file disk (what a plug holds goes to the kernel in one io_uring_enter, as
 * its counters show) and the plug's flush and nesting rules, and the HDD
 * and SSD latency models (modelled busy time is exact; wall-clock checks
 * are loose).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hbk/disk.h"
#include "disk/disk_priv.h"

#define MiB (1024u * 1024u)

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void fill(uint8_t *p, uint64_t off, size_t len, uint32_t seed)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = (off + i) * 0x9e3779b97f4a7c15ull ^ seed;
		memcpy(p + i, &v, 8);
	}
}

static bool same(const uint8_t *p, uint64_t off, size_t len, uint32_t seed)
{
	uint8_t *want = malloc(len);
	fill(want, off, len, seed);
	bool ok = !memcmp(p, want, len);
	free(want);
	return ok;
}

static void *aligned(size_t len)
{
	void *p = NULL;
	assert_int_equal(posix_memalign(&p, 4096, len), 0);
	return p;
}

/* ---- Async helper: many I/Os in flight ---------------------------------------------- */

struct multi {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned left, errors;
	int error;            /* the result of the first that failed */
	unsigned others;      /* failed with another result than that */
};

static void multi_done(struct hbk_disk_io *io, int result)
{
	struct multi *m = io->priv;
	pthread_mutex_lock(&m->lock);
	m->errors += result != 0;
	if (result && !m->error)
		m->error = result;
	m->others += result && result != m->error;
	if (--m->left == 0)
		pthread_cond_signal(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

/* Submits ios[0..n) at once and waits; returns the number that failed. */
static unsigned run_all(struct hbk_disk *d, struct hbk_disk_io *ios, unsigned n)
{
	struct multi m = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, n, 0, 0, 0 };
	for (unsigned i = 0; i < n; i++) {
		ios[i].done = multi_done;
		ios[i].priv = &m;
	}
	for (unsigned i = 0; i < n; i++)
		hbk_disk_submit(d, &ios[i]);
	pthread_mutex_lock(&m.lock);
	while (m.left)
		pthread_cond_wait(&m.cond, &m.lock);
	pthread_mutex_unlock(&m.lock);
	return m.errors;
}

/* Writes 64 scattered 8 KiB blocks in parallel, reads them back in parallel
 * (half of them into unaligned buffers), and compares. */
static void pattern_parallel(struct hbk_disk *d, uint32_t seed)
{
	enum { N = 64, BS = 8192 };
	struct hbk_disk_info di;
	hbk_disk_info(d, &di);
	uint64_t slots = di.size / BS;
	uint8_t *wbuf = aligned(N * BS), *rbuf = aligned(N * (BS + 512));
	struct hbk_disk_io ios[N];
	for (unsigned i = 0; i < N; i++) {
		uint64_t off = (i * 7919u % slots) * BS;
		fill(wbuf + i * BS, off, BS, seed);
		ios[i] = (struct hbk_disk_io){ .op = HBK_DISK_WRITE, .offset = off, .len = BS,
					       .buf = wbuf + i * BS };
	}
	assert_int_equal(run_all(d, ios, N), 0);
	for (unsigned i = 0; i < N; i++) {
		ios[i].op = HBK_DISK_READ;
		ios[i].buf = rbuf + i * (BS + 512) + (i % 2 ? 8 : 0);   /* odd ones need a bounce */
	}
	assert_int_equal(run_all(d, ios, N), 0);
	for (unsigned i = 0; i < N; i++)
		assert_true(same(ios[i].buf, ios[i].offset, BS, seed));
	free(wbuf);
	free(rbuf);
}

/* ---- Memory and null ------------------------------------------------------------------ */

static void test_mem_rw_and_validation(void **state)
{
	(void)state;
	struct hbk_disk *d;
	uint8_t *buf = aligned(8192);
	assert_int_equal(hbk_disk_open_mem(4 * MiB, &d), 0);
	pattern_parallel(d, 1);

	fill(buf, 4096, 4096, 9);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_WRITE, buf, 4096, 4096, HBK_DISK_FUA), 0);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_FLUSH, NULL, 0, 0, 0), 0);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_DISCARD, NULL, 4096, 4096, 0), 0);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_READ, buf, 4096, 4096, 0), 0);
	for (int i = 0; i < 4096; i++)
		assert_int_equal(buf[i], 0);

	/* Unaligned offset or length, past the end, no buffer. */
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_READ, buf, 100, 512, 0), -EINVAL);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_READ, buf, 0, 100, 0), -EINVAL);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_READ, buf, 4 * MiB - 512, 1024, 0), -EINVAL);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_WRITE, NULL, 0, 512, 0), -EINVAL);
	assert_int_equal(hbk_disk_rw(d, (enum hbk_disk_op)7, buf, 0, 512, 0), -EINVAL);

	struct hbk_disk_stats st;
	hbk_disk_stats(d, &st);
	assert_int_equal(st.writes, 65);
	assert_int_equal(st.reads, 65);
	assert_int_equal(st.errors, 5);
	hbk_disk_close(d);
	assert_int_equal(hbk_disk_open_mem(1000, &d), -EINVAL);
	free(buf);
}

/* Overlapping I/O in flight on one memory disk, as SCSI allows: two
 * threads write ranges that overlap while a third reads across both.  Each
 * 512-byte sector read or left behind holds what one of the writes (or the
 * first fill) put there, and the copies themselves do not race (the
 * ThreadSanitizer build checks that). */
struct overlap {
	struct hbk_disk *d;
	pthread_barrier_t *start;
	uint64_t off, len;
	uint32_t seed;                 /* 0: the reader */
	unsigned bad;                  /* reader: sectors holding none of the patterns */
};

enum { OV_ROUNDS = 16, OV_SEED0 = 30, OV_SEED_A = 31, OV_SEED_B = 32 };

static bool sector_is_one_of(const uint8_t *p, uint64_t off)
{
	uint8_t want[512];
	static const uint32_t seeds[] = { OV_SEED0, OV_SEED_A, OV_SEED_B };
	for (unsigned i = 0; i < 3; i++) {
		fill(want, off, 512, seeds[i]);
		if (!memcmp(p, want, 512))
			return true;
	}
	return false;
}

static void *overlap_main(void *arg)
{
	struct overlap *o = arg;
	uint8_t *buf = aligned(o->len);
	if (o->seed)
		fill(buf, o->off, o->len, o->seed);
	for (unsigned round = 0; round < OV_ROUNDS; round++) {
		pthread_barrier_wait(o->start);
		int rc = hbk_disk_rw(o->d, o->seed ? HBK_DISK_WRITE : HBK_DISK_READ, buf, o->off, o->len, 0);
		if (rc)
			o->bad++;
		for (uint64_t s = 0; !o->seed && s < o->len; s += 512)
			o->bad += !sector_is_one_of(buf + s, o->off + s);
	}
	free(buf);
	return NULL;
}

static void test_mem_overlapping_io(void **state)
{
	(void)state;
	struct hbk_disk *d;
	pthread_barrier_t start;
	uint8_t *buf = aligned(2 * MiB);
	assert_int_equal(hbk_disk_open_mem(4 * MiB, &d), 0);
	fill(buf, 0, 2 * MiB, OV_SEED0);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_WRITE, buf, 0, 2 * MiB, 0), 0);
	pthread_barrier_init(&start, NULL, 3);
	struct overlap o[3] = {
		{ .d = d, .start = &start, .off = 0, .len = MiB, .seed = OV_SEED_A },
		{ .d = d, .start = &start, .off = MiB / 2, .len = MiB, .seed = OV_SEED_B },
		{ .d = d, .start = &start, .off = MiB / 4, .len = MiB, .seed = 0 },
	};
	pthread_t t[3];
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&t[i], NULL, overlap_main, &o[i]), 0);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&start);
	for (int i = 0; i < 3; i++)
		assert_int_equal(o[i].bad, 0);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_READ, buf, 0, 2 * MiB, 0), 0);
	for (uint64_t s = 0; s < 2 * MiB; s += 512)
		assert_true(sector_is_one_of(buf + s, s));
	hbk_disk_close(d);
	free(buf);
}

static void test_null_reads_zeros(void **state)
{
	(void)state;
	struct hbk_disk *d;
	uint8_t *buf = aligned(4096);
	assert_int_equal(hbk_disk_open_null(1ull << 40, &d), 0);
	memset(buf, 0xaa, 4096);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_WRITE, buf, 1ull << 39, 4096, 0), 0);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_READ, buf, 1ull << 39, 4096, 0), 0);
	for (int i = 0; i < 4096; i++)
		assert_int_equal(buf[i], 0);
	struct hbk_disk_info di;
	hbk_disk_info(d, &di);
	assert_string_equal(di.kind, "null");
	assert_true(di.size == 1ull << 40);
	hbk_disk_close(d);
	free(buf);
}

/* ---- Files through io_uring ---------------------------------------------------------------- */

static void file_roundtrip_opts(const char *dir, enum hbk_disk_direct mode, bool *direct,
			       uint32_t poll_ms, uint32_t queue_depth)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/hbk-disk-test-%d", dir, (int)getpid());
	struct hbk_disk_file_opts o = { .direct = mode, .create_size = 8 * MiB, .poll_ms = poll_ms,
					.queue_depth = queue_depth };
	struct hbk_disk *d;
	int rc = hbk_disk_open_file(path, &o, &d);
	if (rc) {
		unlink(path);
		*direct = false;
		assert_int_equal(rc, 0);
	}
	struct hbk_disk_info di;
	hbk_disk_info(d, &di);
	*direct = di.direct;
	assert_string_equal(di.kind, "file");
	assert_true(di.size == 8 * MiB);
	assert_true(di.direct ? di.mem_align >= 512 : di.mem_align == 1);
	pattern_parallel(d, 3);

	/* A 3 MiB transfer, FUA, flush, and a hole punched by discard. */
	uint8_t *big = aligned(3 * MiB);
	fill(big, MiB, 3 * MiB, 4);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_WRITE, big, MiB, 3 * MiB, HBK_DISK_FUA), 0);
	memset(big, 0, 3 * MiB);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_READ, big, MiB, 3 * MiB, 0), 0);
	assert_true(same(big, MiB, 3 * MiB, 4));
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_FLUSH, NULL, 0, 0, 0), 0);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_DISCARD, NULL, MiB, MiB, 0), 0);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_READ, big, MiB, 2 * MiB, 0), 0);
	for (size_t i = 0; i < MiB; i++)
		if (big[i])
			fail_msg("discarded byte %zu is %u", i, big[i]);
	assert_true(same(big + MiB, 2 * MiB, MiB, 4));
	free(big);
	hbk_disk_close(d);

	/* Reopening finds the data. */
	o.create_size = 0;
	assert_int_equal(hbk_disk_open_file(path, &o, &d), 0);
	uint8_t *buf = aligned(4096);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_READ, buf, 3 * MiB, 4096, 0), 0);
	assert_true(same(buf, 3 * MiB, 4096, 4));
	free(buf);
	hbk_disk_close(d);
	unlink(path);
}

static void file_roundtrip(const char *dir, enum hbk_disk_direct mode, bool *direct)
{
	file_roundtrip_opts(dir, mode, direct, 0, 0);
}

static void test_file_direct(void **state)
{
	(void)state;
	bool direct;
	file_roundtrip("/tmp", HBK_DISK_DIRECT_AUTO, &direct);
	printf("# /tmp: O_DIRECT %s\n", direct ? "in use" : "refused, buffered fallback");
	if (!direct)   /* /tmp on tmpfs without O_DIRECT: use the disk-backed /var/tmp */
		file_roundtrip("/var/tmp", HBK_DISK_DIRECT_AUTO, &direct);
	assert_true(direct);
	file_roundtrip("/tmp", HBK_DISK_DIRECT_OFF, &direct);
	assert_false(direct);
	file_roundtrip("/dev/shm", HBK_DISK_DIRECT_AUTO, &direct);
	printf("# /dev/shm (tmpfs): O_DIRECT %s\n", direct ? "accepted by this kernel" : "refused");
}

/* How many io_uring polling threads (iou-sqp-PID) this process has. */
static unsigned pollers(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "cat /proc/%d/task/*/comm | grep -c '^iou-sqp'", (int)getpid());
	FILE *f = popen(cmd, "r");
	unsigned n = 0;
	assert_non_null(f);
	if (fscanf(f, "%u", &n) != 1)
		n = 0;
	pclose(f);
	return n;
}

struct polled_job {
	struct hbk_disk *disk[2];
	unsigned id;
};

/* One of several threads putting I/O on two polled disks at once: 64
 * parallel writes into this thread's own blocks of each, then reads. */
static void *polled_job(void *arg)
{
	struct polled_job *j = arg;
	enum { N = 64, BS = 4096 };
	uint8_t *buf = aligned(2 * N * BS);
	struct hbk_disk_io ios[2 * N];
	for (unsigned i = 0; i < 2 * N; i++) {
		uint64_t off = ((uint64_t)(i / 2) * 8 + j->id) * BS;
		fill(buf + i * BS, off, BS, 10 + j->id);
		ios[i] = (struct hbk_disk_io){ .op = HBK_DISK_WRITE, .offset = off, .len = BS,
					       .buf = buf + i * BS };
	}
	struct multi m = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 2 * N, 0, 0, 0 };
	for (unsigned i = 0; i < 2 * N; i++) {
		ios[i].done = multi_done;
		ios[i].priv = &m;
		hbk_disk_submit(j->disk[i % 2], &ios[i]);
	}
	pthread_mutex_lock(&m.lock);
	while (m.left)
		pthread_cond_wait(&m.cond, &m.lock);
	pthread_mutex_unlock(&m.lock);
	unsigned bad = m.errors;
	memset(buf, 0, 2 * N * BS);
	m.left = 2 * N;
	for (unsigned i = 0; i < 2 * N; i++) {
		ios[i].op = HBK_DISK_READ;
		hbk_disk_submit(j->disk[i % 2], &ios[i]);
	}
	pthread_mutex_lock(&m.lock);
	while (m.left)
		pthread_cond_wait(&m.cond, &m.lock);
	pthread_mutex_unlock(&m.lock);
	bad += m.errors;
	for (unsigned i = 0; i < 2 * N; i++)
		bad += !same(buf + i * BS, ios[i].offset, BS, 10 + j->id);
	free(buf);
	return (void *)(uintptr_t)bad;
}

/*
 * Polled files: the round trip of the other file tests (a queue of 4
 * entries for 64 I/Os in flight, so submitters wait for room), then two
 * disks served by one kernel poller while four threads put I/O on both at
 * once; the poller outlives the disk that started it and ends with the last.
 */
static void test_file_polled(void **state)
{
	(void)state;
	bool direct;
	file_roundtrip_opts("/var/tmp", HBK_DISK_DIRECT_AUTO, &direct, 5, 4);
	file_roundtrip_opts("/var/tmp", HBK_DISK_DIRECT_OFF, &direct, 5, 0);
	for (int i = 0; i < 200 && pollers(); i++)   /* their pollers end on their own time */
		usleep(10000);

	char p[3][256];
	struct hbk_disk *d[3];
	struct hbk_disk_file_opts o = { .create_size = 8 * MiB, .poll_ms = 5 };
	for (unsigned i = 0; i < 2; i++) {
		snprintf(p[i], sizeof(p[i]), "/var/tmp/hbk-disk-polled%u-%d", i, (int)getpid());
		assert_int_equal(hbk_disk_open_file(p[i], &o, &d[i]), 0);
	}
	assert_int_equal(pollers(), 1);
	pthread_t t[4];
	struct polled_job jobs[4];
	for (unsigned i = 0; i < 4; i++) {
		jobs[i] = (struct polled_job){ .disk = { d[0], d[1] }, .id = i };
		assert_int_equal(pthread_create(&t[i], NULL, polled_job, &jobs[i]), 0);
	}
	for (unsigned i = 0; i < 4; i++) {
		void *bad;
		pthread_join(t[i], &bad);
		assert_int_equal((uintptr_t)bad, 0);
	}
	hbk_disk_close(d[0]);   /* the poller's first disk */
	snprintf(p[2], sizeof(p[2]), "/var/tmp/hbk-disk-polled2-%d", (int)getpid());
	assert_int_equal(hbk_disk_open_file(p[2], &o, &d[2]), 0);
	assert_int_equal(pollers(), 1);
	jobs[0] = (struct polled_job){ .disk = { d[1], d[2] }, .id = 5 };
	assert_null(polled_job(&jobs[0]));
	struct hbk_disk_stats st;
	hbk_disk_stats(d[2], &st);   /* the new disk polls too: no kernel entries */
	assert_true(st.submitted >= 128 && st.submit_calls == 0);
	hbk_disk_stats(d[1], &st);
	assert_true(st.submitted >= 4 * 128 && st.submit_calls == 0);
	hbk_disk_close(d[1]);
	hbk_disk_close(d[2]);
	for (int i = 0; i < 200 && pollers(); i++)
		usleep(10000);
	assert_int_equal(pollers(), 0);
	for (unsigned i = 0; i < 3; i++)
		unlink(p[i]);
}

struct close_race {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	struct hbk_disk *disk;
	struct hbk_disk_io io;
};

static void close_race_done(struct hbk_disk_io *io, int result)
{
	struct close_race *r = io->priv;
	assert_int_equal(result, 0);
	pthread_mutex_lock(&r->lock);
	r->done = true;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

static void *close_race_submit(void *arg)
{
	struct close_race *r = arg;
	hbk_disk_submit(r->disk, &r->io);
	return NULL;
}

/*
 * A disk closed as soon as its last I/O is done, as the contract allows,
 * while the thread that submitted that I/O may not have left
 * hbk_disk_submit yet (polled: it still held the ring's lock).  Close waits
 * for it; without that, TSan saw a locked mutex destroyed and writes to
 * freed memory.
 */
static void test_close_right_after_done(void **state)
{
	(void)state;
	char path[64];
	snprintf(path, sizeof(path), "/var/tmp/hbk-disk-close-%d", (int)getpid());
	uint8_t *buf = aligned(4096);
	for (unsigned round = 0; round < 200; round++) {
		struct hbk_disk_file_opts o = { .create_size = MiB, .poll_ms = round % 2 ? 5 : 0 };
		struct close_race r = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
		assert_int_equal(hbk_disk_open_file(path, &o, &r.disk), 0);
		r.io = (struct hbk_disk_io){ .op = HBK_DISK_READ, .len = 4096, .buf = buf,
					     .done = close_race_done, .priv = &r };
		pthread_t t;
		assert_int_equal(pthread_create(&t, NULL, close_race_submit, &r), 0);
		pthread_mutex_lock(&r.lock);
		while (!r.done)
			pthread_cond_wait(&r.cond, &r.lock);
		pthread_mutex_unlock(&r.lock);
		hbk_disk_close(r.disk);
		pthread_join(t, NULL);
	}
	free(buf);
	unlink(path);
}

/* A filesystem refusing O_DIRECT, as tmpfs did before Linux 6.6. */
static int refuse_direct(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = (mode_t)va_arg(ap, int);
	va_end(ap);
	if (flags & O_DIRECT) {
		errno = EINVAL;
		return -1;
	}
	return open(path, flags, mode);
}

static void test_file_direct_fallback(void **state)
{
	(void)state;
	bool direct = true;
	hbk_disk_open_fn = refuse_direct;
	file_roundtrip("/tmp", HBK_DISK_DIRECT_AUTO, &direct);
	assert_false(direct);
	printf("# O_DIRECT refused by open(2): buffered fallback exercised\n");

	char path[64];
	snprintf(path, sizeof(path), "/tmp/hbk-disk-on-%d", (int)getpid());
	struct hbk_disk_file_opts o = { .direct = HBK_DISK_DIRECT_ON, .create_size = MiB };
	struct hbk_disk *d;
	assert_int_equal(hbk_disk_open_file(path, &o, &d), -EINVAL);
	hbk_disk_open_fn = open;
	unlink(path);
	assert_int_equal(hbk_disk_open_file("/nonexistent/x", NULL, &d), -ENOENT);
}

/* ---- NBD ------------------------------------------------------------------------------------- */

extern char **environ;

/* Starts nbdkit (argv from its -U on: argv[1] is the socket) and waits
 * for its socket; returns its pid, or 0 when nbdkit cannot be run. */
static pid_t start_nbdkit(char **argv)
{
	char *full[16] = { "nbdkit", "-f", "--exit-with-parent" };
	unsigned n = 3;
	for (unsigned i = 0; argv[i] && n < 15; i++)
		full[n++] = argv[i];
	pid_t pid;
	if (posix_spawnp(&pid, "nbdkit", NULL, NULL, full, environ))
		return 0;
	struct stat st;
	for (int i = 0; i < 500 && stat(argv[1], &st); i++)
		usleep(10000);
	return pid;
}

static void test_nbd(void **state)
{
	(void)state;
	char sock[64];
	snprintf(sock, sizeof(sock), "/tmp/hbk-nbd-%d.sock", (int)getpid());
	char *argv[] = { "-U", sock, "memory", "16M", NULL };
	pid_t pid = start_nbdkit(argv);
	if (!pid) {
		skip();
		return;
	}

	struct hbk_disk *d;
	int rc = hbk_disk_open_nbd(sock, &d);
	if (rc) {
		kill(pid, SIGTERM);
		waitpid(pid, NULL, 0);
		assert_int_equal(rc, 0);
	}
	struct hbk_disk_info di;
	hbk_disk_info(d, &di);
	assert_string_equal(di.kind, "nbd");
	assert_true(di.size == 16 * MiB);
	assert_true(di.discard);
	pattern_parallel(d, 5);
	uint8_t *buf = aligned(MiB);
	fill(buf, 0, MiB, 6);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_WRITE, buf, 0, MiB, HBK_DISK_FUA), 0);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_FLUSH, NULL, 0, 0, 0), 0);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_DISCARD, NULL, 0, 65536, 0), 0);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_READ, buf, 0, MiB, 0), 0);
	for (int i = 0; i < 65536; i++)
		assert_int_equal(buf[i], 0);   /* nbdkit memory trims to zeros */
	assert_true(same(buf + 65536, 65536, MiB - 65536, 6));
	/* A discard that must read back as zeros (HBK_DISK_ZERO, as the RAID
	 * layer's mirrors and parity send): an NBD disk does not promise that
	 * its trims zero, so it writes zeros. */
	struct hbk_disk_stats st0, st1;
	hbk_disk_stats(d, &st0);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_DISCARD, NULL, 65536, 65536, HBK_DISK_ZERO), 0);
	hbk_disk_stats(d, &st1);
	assert_int_equal(st1.write_bytes - st0.write_bytes, 65536);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_READ, buf, 0, MiB, 0), 0);
	for (int i = 0; i < 2 * 65536; i++)
		assert_int_equal(buf[i], 0);
	assert_true(same(buf + 2 * 65536, 2 * 65536, MiB - 2 * 65536, 6));
	hbk_disk_close(d);

	/* The same export through an NBD URI. */
	char uri[128];
	snprintf(uri, sizeof(uri), "nbd+unix:///?socket=%s", sock);
	assert_int_equal(hbk_disk_open_nbd(uri, &d), 0);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_READ, buf, 2 * 65536, 4096, 0), 0);
	assert_true(same(buf, 2 * 65536, 4096, 6));

	/* The server dies: I/O fails, nothing hangs. */
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	unlink(sock);
	assert_int_not_equal(hbk_disk_rw(d, HBK_DISK_READ, buf, 0, 4096, 0), 0);
	hbk_disk_close(d);
	assert_int_not_equal(hbk_disk_open_nbd(sock, &d), 0);
	free(buf);
}

/* Starts nbdkit as start_nbdkit does and opens its export: the disk and
 * *pid, or NULL (the test skipped) when nbdkit cannot be run. */
static struct hbk_disk *nbdkit_disk(char **argv, pid_t *pid)
{
	*pid = start_nbdkit(argv);
	if (!*pid) {
		skip();
		return NULL;
	}
	struct hbk_disk *d = NULL;
	assert_int_equal(hbk_disk_open_nbd(argv[1], &d), 0);
	return d;
}

/* A server that flushes but has no FUA (nbdkit's fua filter in its
 * default mode, in front of its log filter): a FUA write is acknowledged
 * only after a flush that follows it, as the log shows by then. */
static void test_nbd_fua_without_server_fua(void **state)
{
	(void)state;
	char sock[64], log[64], logarg[80];
	snprintf(sock, sizeof(sock), "/tmp/hbk-nbd-fua-%d.sock", (int)getpid());
	snprintf(log, sizeof(log), "/tmp/hbk-nbd-fua-%d.log", (int)getpid());
	snprintf(logarg, sizeof(logarg), "logfile=%s", log);
	char *argv[] = { "-U", sock, "--filter=log", "--filter=fua", "memory", "16M", logarg, NULL };
	pid_t pid;
	struct hbk_disk *d = nbdkit_disk(argv, &pid);
	if (!d)
		return;
	uint8_t *buf = aligned(4096);
	fill(buf, 0, 4096, 7);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_WRITE, buf, 8192, 4096, 0), 0);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_WRITE, buf, 0, 4096, HBK_DISK_FUA), 0);
	/* The log, as it stands when the FUA write was acknowledged. */
	FILE *f = fopen(log, "r");
	assert_non_null(f);
	char line[512];
	int writes = 0, flush_after_fua = 0;
	bool fua_seen = false;
	while (fgets(line, sizeof(line), f)) {
		if (strstr(line, "Write id=") && !strstr(line, "return=")) {
			writes++;
			fua_seen = strstr(line, "offset=0x0 ") != NULL;
		}
		if (fua_seen && strstr(line, "Flush id=") && strstr(line, "return=0"))
			flush_after_fua++;
	}
	fclose(f);
	assert_int_equal(writes, 2);
	assert_int_equal(flush_after_fua, 1);  /* done before the acknowledgement */
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_READ, buf, 0, 4096, 0), 0);
	assert_true(same(buf, 0, 4096, 7));
	hbk_disk_close(d);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	unlink(sock);
	unlink(log);
	free(buf);
}

/* A server that refuses requests over 64 KiB (nbdkit's blocksize-policy
 * filter): longer I/O goes as pieces it takes, with the data intact. */
static void test_nbd_longer_than_max_io(void **state)
{
	(void)state;
	char sock[64];
	snprintf(sock, sizeof(sock), "/tmp/hbk-nbd-max-%d.sock", (int)getpid());
	char *argv[] = { "-U", sock, "--filter=blocksize-policy", "memory", "16M",
			 "blocksize-maximum=65536", "blocksize-error-policy=error", NULL };
	pid_t pid;
	struct hbk_disk *d = nbdkit_disk(argv, &pid);
	if (!d)
		return;
	struct hbk_disk_info di;
	hbk_disk_info(d, &di);
	assert_int_equal(di.max_io, 65536);
	uint8_t *buf = aligned(MiB + 4096);
	fill(buf, 0, MiB + 4096, 8);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_WRITE, buf, 4096, MiB + 4096, HBK_DISK_FUA), 0);
	memset(buf, 0, MiB + 4096);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_READ, buf, 4096, MiB + 4096, 0), 0);
	assert_true(same(buf, 0, MiB + 4096, 8));
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_DISCARD, NULL, 4096, MiB, 0), 0);
	/* A refused discard on a disk that promises no zeros: advisory, done. */
	assert_false(di.discard_zeroes);
	hbk_disk_inject(d, &(struct hbk_disk_fault){ .refuse_discards = true });
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_DISCARD, NULL, 0, 4096, 0), 0);
	/* A piece that fails fails the whole: the disk dies 100 KiB in. */
	hbk_disk_inject(d, &(struct hbk_disk_fault){ .write_budget = 100 * 1024, .error = -ENOSPC });
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_WRITE, buf, 0, MiB, 0), -ENOSPC);
	hbk_disk_inject(d, NULL);
	hbk_disk_close(d);
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	unlink(sock);
	free(buf);
}

/* The server dies with reads in flight (nbdkit's delay filter holds each
 * for 10 s): every one ends, failed with -ENOTCONN, well before the delay;
 * later I/O fails at once with the same error (not -EINVAL, which says
 * the request was wrong); nothing hangs. */
static void test_nbd_server_dies_mid_io(void **state)
{
	(void)state;
	enum { N = 8 };
	char sock[64];
	snprintf(sock, sizeof(sock), "/tmp/hbk-nbd-die-%d.sock", (int)getpid());
	char *argv[] = { "-U", sock, "--filter=delay", "memory", "16M", "rdelay=10", NULL };
	pid_t pid;
	struct hbk_disk *d = nbdkit_disk(argv, &pid);
	if (!d)
		return;
	uint8_t *buf = aligned(N * 4096);
	struct hbk_disk_io ios[N];
	struct multi m = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, N, 0, 0, 0 };
	for (unsigned i = 0; i < N; i++) {
		ios[i] = (struct hbk_disk_io){ .op = HBK_DISK_READ, .offset = i * 65536ull, .len = 4096,
					       .buf = buf + i * 4096, .done = multi_done, .priv = &m };
		hbk_disk_submit(d, &ios[i]);
	}
	usleep(200000);   /* the reads reach the server and wait in its filter */
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	unlink(sock);
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	pthread_mutex_lock(&m.lock);
	while (m.left && pthread_cond_timedwait(&m.cond, &m.lock, &until) == 0)
		;
	unsigned left = m.left, errors = m.errors;
	int error = m.error;
	unsigned others = m.others;
	pthread_mutex_unlock(&m.lock);
	assert_int_equal(left, 0);
	assert_int_equal(errors, N);
	assert_int_equal(error, -ENOTCONN);
	assert_int_equal(others, 0);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_READ, buf, 0, 4096, 0), -ENOTCONN);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_WRITE, buf, 0, 4096, 0), -ENOTCONN);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_FLUSH, NULL, 0, 0, 0), -ENOTCONN);
	hbk_disk_close(d);
	free(buf);
}

/* ---- Faults ----------------------------------------------------------------------------------- */

static void test_fault_injection(void **state)
{
	(void)state;
	struct hbk_disk *d;
	uint8_t *buf = aligned(16384);
	assert_int_equal(hbk_disk_open_mem(MiB, &d), 0);

	hbk_disk_inject(d, &(struct hbk_disk_fault){ .fail_all = true });
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_READ, buf, 0, 4096, 0), -EIO);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_FLUSH, NULL, 0, 0, 0), -EIO);
	hbk_disk_inject(d, &(struct hbk_disk_fault){ .fail_all = true, .error = -ENXIO });
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_WRITE, buf, 0, 4096, 0), -ENXIO);
	/* A refused discard on a disk whose discards read as zeros is a write
	 * of zeros: it fails only as that write does. */
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_DISCARD, NULL, 0, 4096, 0), -ENXIO);
	hbk_disk_inject(d, NULL);
	fill(buf, 65536, 8192, 9);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_WRITE, buf, 65536, 8192, 0), 0);
	hbk_disk_inject(d, &(struct hbk_disk_fault){ .refuse_discards = true });
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_DISCARD, NULL, 65536, 4096, 0), 0);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_READ, buf, 65536, 8192, 0), 0);
	for (int i = 0; i < 4096; i++)
		assert_int_equal(buf[i], 0);
	assert_true(same(buf + 4096, 65536 + 4096, 4096, 9));

	/* 6 KiB of budget: the first 4 KiB write fits, the next dies after
	 * 2 KiB (which land), and later writes fail; reads still work. */
	hbk_disk_inject(d, &(struct hbk_disk_fault){ .write_budget = 6144 });
	fill(buf, 0, 16384, 7);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_WRITE, buf, 0, 4096, 0), 0);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_WRITE, buf + 4096, 4096, 4096, 0), -EIO);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_WRITE, buf + 8192, 8192, 4096, 0), -EIO);
	memset(buf, 0, 16384);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_READ, buf, 0, 12288, 0), 0);
	assert_true(same(buf, 0, 6144, 7));
	for (int i = 6144; i < 12288; i++)
		assert_int_equal(buf[i], 0);

	/* Power lost with a volatile cache: writes "succeed" but vanish. */
	hbk_disk_inject(d, &(struct hbk_disk_fault){ .drop_writes = true });
	fill(buf, 0, 4096, 8);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_WRITE, buf, 0, 4096, 0), 0);
	hbk_disk_inject(d, NULL);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_READ, buf, 0, 4096, 0), 0);
	assert_true(same(buf, 0, 4096, 7));
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_WRITE, buf, 0, 4096, 0), 0);
	hbk_disk_close(d);
	free(buf);
}

/* ---- Batched submission ------------------------------------------------------------------------- */

/* A completion that keeps the disk's ring thread inside its callback until
 * the test lets it go, so nothing else is taken onto the ring meanwhile. */
struct gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool entered, open;
};

static void gate_done(struct hbk_disk_io *io, int result)
{
	struct gate *g = io->priv;
	assert_int_equal(result, 0);
	pthread_mutex_lock(&g->lock);
	g->entered = true;
	pthread_cond_broadcast(&g->cond);
	while (!g->open)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
}

static struct hbk_disk *open_scratch(const char *name, char *path, size_t size)
{
	struct hbk_disk *d;
	snprintf(path, size, "/var/tmp/hbk-disk-%s-%d", name, (int)getpid());
	struct hbk_disk_file_opts o = { .create_size = 8 * MiB };
	assert_int_equal(hbk_disk_open_file(path, &o, &d), 0);
	return d;
}

/*
 * Eight reads submitted under one plug reach the kernel in one submission:
 * the file disk's counters go up by one call and eight I/Os.  The ring
 * thread is held in a completion callback meanwhile, so it cannot take the
 * reads one by one as they come: what it finds when let go is the batch.
 */
static void test_file_batched_submission(void **state)
{
	(void)state;
	char path[256];
	struct hbk_disk *d = open_scratch("batch", path, sizeof(path));
	uint8_t *buf = aligned(9 * 4096);
	struct gate g = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false };
	struct hbk_disk_io hold = { .op = HBK_DISK_READ, .offset = 0, .len = 4096, .buf = buf,
				    .done = gate_done, .priv = &g };
	hbk_disk_submit(d, &hold);
	pthread_mutex_lock(&g.lock);
	while (!g.entered)
		pthread_cond_wait(&g.cond, &g.lock);
	pthread_mutex_unlock(&g.lock);

	struct hbk_disk_stats before, mid, after;
	hbk_disk_stats(d, &before);
	struct hbk_disk_io ios[8];
	struct multi m = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 8, 0, 0, 0 };
	struct hbk_disk_plug plug;
	hbk_disk_plug(&plug);
	for (unsigned i = 0; i < 8; i++) {
		ios[i] = (struct hbk_disk_io){ .op = HBK_DISK_READ, .offset = (i + 1) * 65536ull,
					       .len = 4096, .buf = buf + (i + 1) * 4096,
					       .done = multi_done, .priv = &m };
		hbk_disk_submit(d, &ios[i]);
	}
	hbk_disk_unplug(&plug);
	hbk_disk_stats(d, &mid);
	assert_true(mid.submitted == before.submitted);   /* none entered yet */

	pthread_mutex_lock(&g.lock);
	g.open = true;
	pthread_cond_broadcast(&g.cond);
	pthread_mutex_unlock(&g.lock);
	pthread_mutex_lock(&m.lock);
	while (m.left)
		pthread_cond_wait(&m.cond, &m.lock);
	pthread_mutex_unlock(&m.lock);
	assert_int_equal(m.errors, 0);
	hbk_disk_stats(d, &after);
	assert_int_equal(after.submitted - before.submitted, 8);
	assert_int_equal(after.submit_calls - before.submit_calls, 1);
	assert_int_equal(after.reads - before.reads, 8);
	hbk_disk_close(d);
	unlink(path);
	free(buf);
}

static void count_done(struct hbk_disk_io *io, int result)
{
	(void)result;
	atomic_fetch_add((atomic_uint *)io->priv, 1);
}

/*
 * The plug's rules: a blocking helper inside a plug flushes it (it would
 * wait forever for its own I/O otherwise), so do explicit flushes; plugs
 * nest (the inner end does nothing, the outer one submits); one plug serves
 * several disks; and faults still apply to plugged I/O.
 */
static void test_plug_rules(void **state)
{
	(void)state;
	char p1[256], p2[256];
	struct hbk_disk *d1 = open_scratch("plug1", p1, sizeof(p1));
	struct hbk_disk *d2 = open_scratch("plug2", p2, sizeof(p2));
	uint8_t *buf = aligned(4 * 4096);
	fill(buf, 0, 4096, 11);

	struct hbk_disk_plug outer, inner;
	hbk_disk_plug(&outer);
	hbk_disk_plug(&inner);
	assert_true(outer.active);
	assert_false(inner.active);
	assert_int_equal(hbk_disk_rw(d1, HBK_DISK_WRITE, buf, 0, 4096, 0), 0);
	atomic_uint done = 0;
	struct hbk_disk_io a = { .op = HBK_DISK_READ, .offset = 0, .len = 4096,
				 .buf = buf + 4096, .done = count_done, .priv = &done };
	struct hbk_disk_io b = { .op = HBK_DISK_READ, .offset = 4096, .len = 4096,
				 .buf = buf + 8192, .done = count_done, .priv = &done };
	hbk_disk_submit(d1, &a);
	hbk_disk_submit(d2, &b);
	hbk_disk_unplug(&inner);             /* not the outermost: nothing changes */
	assert_true(outer.active);
	hbk_disk_plug_flush();               /* both disks' reads go now */
	while (atomic_load(&done) < 2)
		sched_yield();
	assert_true(same(buf + 4096, 0, 4096, 11));

	hbk_disk_inject(d2, &(struct hbk_disk_fault){ .fail_all = true });
	assert_int_equal(hbk_disk_rw(d2, HBK_DISK_READ, buf, 0, 4096, 0), -EIO);
	hbk_disk_inject(d2, NULL);
	hbk_disk_unplug(&outer);
	assert_false(outer.active);
	hbk_disk_plug_flush();               /* no plug: nothing to do */

	hbk_disk_close(d1);
	hbk_disk_close(d2);
	unlink(p1);
	unlink(p2);
	free(buf);
}

/* ---- Latency models ----------------------------------------------------------------------------- */

/* n reads of 4 KiB at offsets off[i], all submitted at once; returns wall ns. */
static uint64_t timed_reads(struct hbk_disk *d, const uint64_t *off, unsigned n, uint8_t *buf)
{
	struct hbk_disk_io ios[64];
	for (unsigned i = 0; i < n; i++)
		ios[i] = (struct hbk_disk_io){ .op = HBK_DISK_READ, .offset = off[i], .len = 4096,
					       .buf = buf + i * 4096 };
	uint64_t t0 = now_ns();
	assert_int_equal(run_all(d, ios, n), 0);
	return now_ns() - t0;
}

static void test_hdd_model(void **state)
{
	(void)state;
	enum { N = 16 };
	struct hbk_disk *d;
	struct hbk_disk_stats st;
	uint8_t *buf = aligned(N * 4096);
	uint64_t seq[N], rnd[N];
	assert_int_equal(hbk_disk_open_mem(1ull << 30, &d), 0);
	assert_int_equal(hbk_disk_set_latency(d, &(struct hbk_disk_latency){ .model = HBK_DISK_MODEL_HDD }),
			 -EINVAL);
	assert_int_equal(hbk_disk_set_latency(d, &hbk_disk_hdd_7200), 0);
	for (unsigned i = 0; i < N; i++) {
		seq[i] = i * 4096ull;
		rnd[i] = ((i * 2654435761u) % 262144u) * 4096ull;
	}

	uint64_t t_seq = timed_reads(d, seq, N, buf);
	hbk_disk_stats(d, &st);
	/* Sequential from the head's position: transfer time only, exactly. */
	assert_int_equal(st.seeks, 0);
	assert_int_equal(st.busy_ns, N * (4096ull * 1000000000u / hbk_disk_hdd_7200.rate));
	uint64_t busy_seq = st.busy_ns;

	uint64_t t_rnd = timed_reads(d, rnd, N, buf);
	hbk_disk_stats(d, &st);
	uint64_t busy_rnd = st.busy_ns - busy_seq;
	assert_int_equal(st.seeks, N);
	/* Each random read pays at least track-to-track and half a rotation. */
	assert_true(busy_rnd >= N * (500000ull + 30000000000ull / 7200));
	/* One request at a time: the wall clock cannot beat the model. */
	assert_true(t_rnd >= busy_rnd);
	assert_true(t_seq * 20 < t_rnd);
	printf("# HDD model: %u sequential 4 KiB reads %.2f ms, %u random %.2f ms (modelled %.2f ms)\n",
	       N, t_seq / 1e6, N, t_rnd / 1e6, busy_rnd / 1e6);
	assert_int_equal(hbk_disk_set_latency(d, NULL), 0);
	hbk_disk_close(d);
	free(buf);
}

/* HDD parameters at their edges: no seek time, the fastest spindle and
 * transfer, and a channel count (an SSD field, which an HDD ignores) past
 * what any model has: I/O and flushes end at once, nothing is read past
 * the model's state (the sanitizer build checks). */
static void test_hdd_model_edges(void **state)
{
	(void)state;
	struct hbk_disk *d;
	struct hbk_disk_stats st;
	uint8_t *buf = aligned(4096);
	struct hbk_disk_latency m = { .model = HBK_DISK_MODEL_HDD, .rpm = UINT32_MAX,
				      .channels = 1000, .rate = UINT64_MAX };
	assert_int_equal(hbk_disk_open_mem(64 * MiB, &d), 0);
	assert_int_equal(hbk_disk_set_latency(d, &m), 0);
	uint64_t t0 = now_ns();
	for (unsigned i = 0; i < 64; i++) {
		assert_int_equal(hbk_disk_rw(d, HBK_DISK_WRITE, buf, (i * 7919ull % 16384) * 4096,
					     4096, 0), 0);
		assert_int_equal(hbk_disk_rw(d, HBK_DISK_FLUSH, NULL, 0, 0, 0), 0);
	}
	hbk_disk_stats(d, &st);
	assert_true(st.seeks > 0);
	assert_true(st.busy_ns < 1000000);   /* 7 ns of rotation a seek */
	assert_true(now_ns() - t0 < 2000000000ull);
	hbk_disk_close(d);
	free(buf);
}

static void test_ssd_model(void **state)
{
	(void)state;
	enum { N = 16 };
	struct hbk_disk *d;
	struct hbk_disk_stats st;
	uint8_t *buf = aligned(N * 4096);
	uint64_t off[N];
	struct hbk_disk_latency m = { .model = HBK_DISK_MODEL_SSD, .latency_us = 2000,
				      .channels = 4, .rate = 500000000 };
	assert_int_equal(hbk_disk_open_mem(64 * MiB, &d), 0);
	assert_int_equal(hbk_disk_set_latency(d, &m), 0);
	for (unsigned i = 0; i < N; i++)
		off[i] = i * 3 * MiB;
	uint64_t t = timed_reads(d, off, N, buf);
	hbk_disk_stats(d, &st);
	assert_int_equal(st.busy_ns, N * (2000000ull + 4096ull * 1000000000u / m.rate));
	/* Four channels: about a quarter of the serial time. */
	assert_true(t >= st.busy_ns / 4);
	assert_true(t < st.busy_ns * 3 / 4);
	hbk_disk_close(d);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mem_rw_and_validation),
		cmocka_unit_test(test_null_reads_zeros),
		cmocka_unit_test(test_mem_overlapping_io),
		cmocka_unit_test(test_file_direct),
		cmocka_unit_test(test_file_direct_fallback),
		cmocka_unit_test(test_file_polled),
		cmocka_unit_test(test_close_right_after_done),
		cmocka_unit_test(test_nbd),
		cmocka_unit_test(test_nbd_fua_without_server_fua),
		cmocka_unit_test(test_nbd_longer_than_max_io),
		cmocka_unit_test(test_nbd_server_dies_mid_io),
		cmocka_unit_test(test_fault_injection),
		cmocka_unit_test(test_file_batched_submission),
		cmocka_unit_test(test_plug_rules),
		cmocka_unit_test(test_hdd_model),
		cmocka_unit_test(test_hdd_model_edges),
		cmocka_unit_test(test_ssd_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
