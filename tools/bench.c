/* SPDX-License-Identifier: MIT */
/*
 * hbakit bench: fio's vocabulary against an hbakit controller.  Each job
 * keeps iodepth block I/Os in flight on arena buffers (zero copy); a
 * completion records its latency and issues the next I/O from the completion
 * callback, so nothing waits between I/Os.  With --ioengine psync each job
 * is a thread of its own that issues one I/O and waits for it, as fio's
 * psync engine does (and as buffered I/O reaches a device: one request per
 * thread at a time, whatever iodepth says).  Prints IOPS, MiB/s, latency
 * percentiles, calls per task, the slots-per-call histogram and CPU seconds
 * per I/O (host and driver process), for one path or both side by side.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "tools/cli.h"
#include "tools/lat_hist.h"

enum rw { RW_READ, RW_WRITE, RW_RANDREAD, RW_RANDWRITE, RW_RANDRW, RW_RW };

struct bench_opts {
	struct cli_ctl ctl;
	enum rw rw;
	unsigned rwmixread;
	uint64_t bs;
	unsigned iodepth, numjobs;
	double runtime;
	uint64_t size;
	uint64_t span;      /* bytes of the LUN the I/O covers, from LBA 0 (0: all) */
	unsigned lun;
	bool json, both, suite;
	bool warmup;        /* read the span once before measuring */
	bool psync;         /* --ioengine psync: a thread per job, one I/O at a time */
	const char *name;
};

struct result {
	const char *mode;
	uint64_t ios, reads, writes, errors;
	double seconds;
	double host_cpu, driver_cpu;   /* driver_cpu < 0: not known (--attach) */
	struct hbk_ctl_stats stats;
	uint64_t lat[LAT_BUCKETS];
};

struct job;

struct slot {
	struct job *job;
	struct hbk_blk_io io;
	uint64_t rng;
	uint64_t start_ns;
};

struct job {
	const struct bench_opts *o;
	struct hbk_lun *lun;
	struct slot *slots;
	uint64_t blocks_per_io, span_ios, first_io;
	atomic_ullong next_seq;   /* sequential cursor */
	atomic_ullong issued_bytes;
	uint64_t end_ns;
	atomic_uint inflight;
	atomic_ullong ios, reads, writes, errors;
	atomic_ullong *lat;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;         /* psync */
};

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static bool is_random(enum rw rw)
{
	return rw == RW_RANDREAD || rw == RW_RANDWRITE || rw == RW_RANDRW;
}

/* Picks the next I/O for a slot; false when the job is done. */
static bool next_io(struct job *j, struct slot *s)
{
	const struct bench_opts *o = j->o;
	if (o->size) {
		if (atomic_fetch_add(&j->issued_bytes, o->bs) >= o->size)
			return false;
	} else if (hbk_coarse_ns() >= j->end_ns) {
		return false;
	}
	uint64_t n;
	if (is_random(o->rw))
		n = xorshift(&s->rng) % j->span_ios;
	else
		n = atomic_fetch_add(&j->next_seq, 1) % j->span_ios;
	bool read;
	switch (o->rw) {
	case RW_READ: case RW_RANDREAD: read = true; break;
	case RW_WRITE: case RW_RANDWRITE: read = false; break;
	default: read = xorshift(&s->rng) % 100 < o->rwmixread; break;
	}
	s->io.op = read ? HBK_BLK_READ : HBK_BLK_WRITE;
	s->io.lba = (j->first_io + n) * j->blocks_per_io;
	s->io.nblocks = (uint32_t)j->blocks_per_io;
	return true;
}

static void slot_done(struct hbk_blk_io *io);

static void issue(struct job *j, struct slot *s)
{
	while (next_io(j, s)) {
		s->start_ns = hbk_now_ns();
		int err = hbk_blk_submit(&s->io);
		if (!err)
			return;
		atomic_fetch_add(&j->errors, 1);
		if (err == -ENODEV)
			break;
	}
	pthread_mutex_lock(&j->lock);
	if (atomic_fetch_sub(&j->inflight, 1) == 1)
		pthread_cond_broadcast(&j->cond);
	pthread_mutex_unlock(&j->lock);
}

/* Counts a completed I/O of slot s: a failed one as an error only, so IOPS,
 * the read/write split and the latency histogram hold the I/Os that did
 * their work. */
static void record(struct job *j, struct slot *s, const struct hbk_blk_io *io)
{
	uint64_t lat = hbk_now_ns() - s->start_ns;
	if (io->error) {
		if (atomic_fetch_add(&j->errors, 1) < 5) {
			char buf[64];
			fprintf(stderr, "hbakit bench: I/O error at LBA %llu: %s (%s)\n",
				(unsigned long long)io->lba, strerror(-io->error),
				hbk_scsi_result_str(&io->result, buf, sizeof(buf)));
		}
		return;
	}
	atomic_fetch_add_explicit(&j->lat[lat_bucket(lat)], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&j->ios, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(io->op == HBK_BLK_READ ? &j->reads : &j->writes, 1,
				  memory_order_relaxed);
}

static void slot_done(struct hbk_blk_io *io)
{
	struct slot *s = io->priv;
	record(s->job, s, io);
	issue(s->job, s);
}

/* psync: a job's thread, one I/O at a time until the job is done; the
 * latency counted is what the thread waited, as fio's psync engine's. */
static void *sync_job(void *arg)
{
	struct job *j = arg;
	struct slot *s = &j->slots[0];
	while (next_io(j, s)) {
		s->start_ns = hbk_now_ns();
		int err = hbk_blk_exec(&s->io);
		if (!err || s->io.error) {   /* it ran (hbk_blk_submit zeroes error first) */
			record(j, s, &s->io);
			continue;
		}
		atomic_fetch_add(&j->errors, 1);   /* not submitted */
		if (err == -ENODEV)
			break;
	}
	return NULL;
}

static double process_cpu(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* CPU seconds the driver process has used, or -1 if not known: a driver
 * attached to (--attach) has no pid here, and a gone one no /proc entry. */
static double driver_cpu(int pid)
{
	if (pid <= 0)
		return -1;
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	char *p = strrchr(buf, ')');
	unsigned long ut = 0, st = 0;
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The warm-up's reads: WARM_DEPTH of WARM_CHUNK in flight, so the modelled
 * disks' latencies overlap (one at a time, 512 MiB of the RAID 5 HDD
 * profile took about 6 s). */
#define WARM_DEPTH 8u
#define WARM_CHUNK (1u << 20)

struct warm {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned nfree;
	struct hbk_blk_io *free[WARM_DEPTH];
	int err;
};

static void warm_done(struct hbk_blk_io *io)
{
	struct warm *w = io->priv;
	pthread_mutex_lock(&w->lock);
	if (io->error && !w->err)
		w->err = io->error;
	w->free[w->nfree++] = io;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

/* Reads the first `bytes` of the LUN once, so that a controller cache holds
 * what the measured run will touch. */
static int warm_up(struct hbk_ctl *c, struct hbk_lun *lun, const struct hbk_lun_info *li,
		   uint64_t bytes)
{
	struct hbk_blk_io ios[WARM_DEPTH];
	struct warm w = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
	/* In the arena if it has room (zero copy), else on the heap (the
	 * host copies through its bounce buffers). */
	bool arena = true;
	void *buf = hbk_ctl_buf_alloc(c, (size_t)WARM_DEPTH * WARM_CHUNK);
	if (!buf) {
		arena = false;
		buf = aligned_alloc(4096, (size_t)WARM_DEPTH * WARM_CHUNK);
		if (!buf)
			return -ENOMEM;
	}
	for (unsigned i = 0; i < WARM_DEPTH; i++) {
		ios[i] = (struct hbk_blk_io){ .lun = lun, .op = HBK_BLK_READ, .done = warm_done, .priv = &w,
					      .buf = (uint8_t *)buf + (size_t)i * WARM_CHUNK };
		w.free[w.nfree++] = &ios[i];
	}
	pthread_mutex_lock(&w.lock);
	for (uint64_t off = 0; !w.err && off < bytes; off += WARM_CHUNK) {
		while (!w.nfree)
			pthread_cond_wait(&w.cond, &w.lock);
		struct hbk_blk_io *io = w.free[--w.nfree];
		pthread_mutex_unlock(&w.lock);
		io->lba = off / li->block_size;
		io->nblocks = (uint32_t)(HBK_MIN(WARM_CHUNK, bytes - off) / li->block_size);
		int err = hbk_blk_submit(io);
		pthread_mutex_lock(&w.lock);
		if (err) {
			w.err = err;
			w.free[w.nfree++] = io;
		}
	}
	while (w.nfree < WARM_DEPTH)    /* the reads still out */
		pthread_cond_wait(&w.cond, &w.lock);
	pthread_mutex_unlock(&w.lock);
	if (arena)
		hbk_ctl_buf_free(c, buf);
	else
		free(buf);
	if (w.err)
		fprintf(stderr, "hbakit bench: warm-up read failed: %s\n", hbk_strerror(w.err));
	return w.err;
}

static int run_mode(const struct bench_opts *o, enum hbk_ctl_mode mode, struct result *res)
{
	struct hbk_ctl *c;
	int err = cli_ctl_open(&o->ctl, mode, &c);
	if (err)
		return err;
	memset(res, 0, sizeof(*res));
	res->mode = hbk_ctl_bundled(c) ? "bundled" : "per-task";
	if (o->lun >= hbk_ctl_lun_count(c)) {
		fprintf(stderr, "hbakit bench: the controller has %u LUN(s), no LUN %u\n",
			hbk_ctl_lun_count(c), o->lun);
		hbk_ctl_close(c);
		return -ENODEV;
	}
	struct hbk_lun *lun = hbk_ctl_lun(c, o->lun);
	struct hbk_lun_info info;
	const struct hbk_lun_info *li = &info;
	hbk_lun_info(lun, &info);
	if (!o->bs || o->bs % li->block_size) {
		fprintf(stderr, "hbakit bench: --bs must be a multiple of the LUN's %u-byte blocks\n",
			li->block_size);
		hbk_ctl_close(c);
		return -EINVAL;
	}
	uint64_t lun_bytes = li->nblocks * li->block_size;
	uint64_t span = o->span ? HBK_MIN(o->span, lun_bytes) : lun_bytes;
	uint64_t lun_ios = span / o->bs;
	/* The warm-up reads what the run can touch: whole I/Os of the span
	 * (a tail shorter than a block would make a read of no blocks). */
	if (o->warmup && (err = warm_up(c, lun, li, lun_ios * o->bs))) {
		hbk_ctl_close(c);
		return err;
	}
	unsigned depth = o->psync ? 1 : o->iodepth;
	struct job *jobs = calloc(o->numjobs, sizeof(*jobs));
	atomic_ullong *lat = calloc(LAT_BUCKETS, sizeof(*lat));
	err = jobs && lat ? 0 : -ENOMEM;
	if (!err && !lun_ios) {
		fprintf(stderr, "hbakit bench: the LUN's %llu bytes hold no I/O of --bs %llu\n",
			(unsigned long long)span, (unsigned long long)o->bs);
		err = -EINVAL;
	}
	/* Every job's lock and condition first, so the clean-up below destroys
	 * only initialised ones whichever set-up step fails. */
	for (unsigned k = 0; jobs && k < o->numjobs; k++) {
		pthread_mutex_init(&jobs[k].lock, NULL);
		pthread_cond_init(&jobs[k].cond, NULL);
	}
	for (unsigned k = 0; !err && k < o->numjobs; k++) {
		struct job *j = &jobs[k];
		j->o = o;
		j->lun = lun;
		j->lat = lat;
		j->blocks_per_io = o->bs / li->block_size;
		/* Random jobs share the LUN; sequential jobs get a region each,
		 * of one I/O and shared round the span when it holds fewer
		 * I/Os than there are jobs (never past the span's end). */
		j->span_ios = is_random(o->rw) ? lun_ios : HBK_MAX(lun_ios / o->numjobs, 1);
		j->first_io = is_random(o->rw) ? 0 : k * j->span_ios % lun_ios;
		j->slots = calloc(depth, sizeof(*j->slots));
		if (!j->slots) {
			err = -ENOMEM;
			break;
		}
		for (unsigned i = 0; i < depth; i++) {
			struct slot *s = &j->slots[i];
			s->job = j;
			s->rng = 0x9e3779b97f4a7c15ull * (k * 1000 + i + 1);
			s->io.lun = lun;
			s->io.done = slot_done;   /* psync: hbk_blk_exec waits instead */
			s->io.priv = s;
			s->io.buf = hbk_ctl_buf_alloc(c, o->bs);
			if (!s->io.buf) {
				fprintf(stderr, "hbakit bench: arena too small for %u x %llu B buffers\n",
					o->numjobs * depth, (unsigned long long)o->bs);
				err = -ENOMEM;
				break;
			}
			memset(s->io.buf, 0xa5 ^ (int)i, o->bs);
		}
	}
	if (!err) {
		hbk_ctl_stats_reset(c);
		double cpu0 = process_cpu(), dcpu0 = driver_cpu(hbk_ctl_driver_pid(c));
		uint64_t t0 = hbk_now_ns();
		for (unsigned k = 0; k < o->numjobs; k++)
			jobs[k].end_ns = t0 + (uint64_t)(o->runtime * 1e9);
		unsigned started = 0;
		for (unsigned k = 0; k < o->numjobs; k++) {
			if (o->psync) {
				if (pthread_create(&jobs[k].thread, NULL, sync_job, &jobs[k])) {
					err = -EAGAIN;
					break;
				}
				started++;
				continue;
			}
			atomic_store(&jobs[k].inflight, o->iodepth);
			for (unsigned i = 0; i < o->iodepth; i++)
				issue(&jobs[k], &jobs[k].slots[i]);
		}
		for (unsigned k = 0; k < o->numjobs; k++) {
			if (o->psync) {
				if (k < started)
					pthread_join(jobs[k].thread, NULL);
				continue;
			}
			pthread_mutex_lock(&jobs[k].lock);
			while (atomic_load(&jobs[k].inflight))
				pthread_cond_wait(&jobs[k].cond, &jobs[k].lock);
			pthread_mutex_unlock(&jobs[k].lock);
		}
		res->seconds = (double)(hbk_now_ns() - t0) / 1e9;
		res->host_cpu = process_cpu() - cpu0;
		double dcpu1 = driver_cpu(hbk_ctl_driver_pid(c));
		res->driver_cpu = dcpu0 < 0 || dcpu1 < 0 ? -1 : dcpu1 - dcpu0;
		hbk_ctl_stats(c, &res->stats);
		for (unsigned k = 0; k < o->numjobs; k++) {
			res->ios += jobs[k].ios;
			res->reads += jobs[k].reads;
			res->writes += jobs[k].writes;
			res->errors += jobs[k].errors;
		}
		for (unsigned b = 0; b < LAT_BUCKETS; b++)
			res->lat[b] = lat[b];
	}
	for (unsigned k = 0; jobs && k < o->numjobs; k++) {
		for (unsigned i = 0; jobs[k].slots && i < depth; i++)
			hbk_ctl_buf_free(c, jobs[k].slots[i].io.buf);
		free(jobs[k].slots);
		pthread_mutex_destroy(&jobs[k].lock);
		pthread_cond_destroy(&jobs[k].cond);
	}
	free(jobs);
	free(lat);
	hbk_ctl_close(c);
	return err;
}

static const char *const hist_label[HBK_HIST_BUCKETS] = { "1", "2", "3-4", "5-8", "9-16", "17-32" };

static void print_normal(const struct bench_opts *o, const struct result *r)
{
	double iops = (double)r->ios / r->seconds;
	double calls = r->stats.tasks ? (double)r->stats.io_calls / (double)r->stats.tasks : 0;
	printf("%s: %s bs=%llu ", r->mode, o->name, (unsigned long long)o->bs);
	if (o->psync)
		printf("ioengine=psync numjobs=%u\n", o->numjobs);
	else
		printf("iodepth=%u numjobs=%u\n", o->iodepth, o->numjobs);
	printf("  IOPS %.0f  (read %.0f, write %.0f)  %.1f MiB/s  errors %llu  runtime %.2f s\n",
	       iops, (double)r->reads / r->seconds, (double)r->writes / r->seconds,
	       iops * (double)o->bs / 1048576.0, (unsigned long long)r->errors, r->seconds);
	printf("  latency usec: p50 %.1f  p99 %.1f  p99.9 %.1f\n",
	       lat_percentile(r->lat, r->ios, 500) / 1e3, lat_percentile(r->lat, r->ios, 990) / 1e3,
	       lat_percentile(r->lat, r->ios, 999) / 1e3);
	printf("  calls per task %.3f  (%llu calls, %llu tasks, %llu completion batches, "
	       "%llu doorbells, %llu driver wakes)\n", calls,
	       (unsigned long long)r->stats.io_calls, (unsigned long long)r->stats.tasks,
	       (unsigned long long)r->stats.completion_msgs,
	       (unsigned long long)r->stats.doorbells, (unsigned long long)r->stats.driver_wakes);
	printf("  slots per call:");
	for (unsigned b = 0; b < HBK_HIST_BUCKETS; b++)
		printf("  %s: %llu", hist_label[b], (unsigned long long)r->stats.hist[b]);
	if (r->stats.ring_polls)
		printf("\n  completion ring polls: %llu, %llu caught",
		       (unsigned long long)r->stats.ring_polls,
		       (unsigned long long)r->stats.ring_polls_caught);
	if (r->driver_cpu < 0)
		printf("\n  CPU per I/O: host %.2f us (host %.2f s, driver not known)\n",
		       r->ios ? r->host_cpu / (double)r->ios * 1e6 : 0, r->host_cpu);
	else
		printf("\n  CPU per I/O: %.2f us (host %.2f s, driver %.2f s)\n",
		       r->ios ? (r->host_cpu + r->driver_cpu) / (double)r->ios * 1e6 : 0,
		       r->host_cpu, r->driver_cpu);
	bool any = false;
	for (unsigned k = 1; k < HBK_RULES; k++)
		if (r->stats.violations[k]) {
			printf("%s HBK-C%02u x%llu", any ? "," : "  contract violations:", k,
			       (unsigned long long)r->stats.violations[k]);
			any = true;
		}
	if (any)
		printf("\n");
}

static void print_json(const struct bench_opts *o, const struct result *r, bool last)
{
	double iops = (double)r->ios / r->seconds;
	printf("    {\"mode\": \"%s\", \"rw\": \"%s\", \"bs\": %llu, \"ioengine\": \"%s\", "
	       "\"iodepth\": %u, \"numjobs\": %u,\n", r->mode, o->name, (unsigned long long)o->bs,
	       o->psync ? "psync" : "async", o->psync ? 1 : o->iodepth, o->numjobs);
	printf("     \"ios\": %llu, \"errors\": %llu, \"seconds\": %.4f, \"iops\": %.1f, "
	       "\"read_iops\": %.1f, \"write_iops\": %.1f, \"mib_s\": %.2f,\n",
	       (unsigned long long)r->ios, (unsigned long long)r->errors, r->seconds, iops,
	       (double)r->reads / r->seconds, (double)r->writes / r->seconds,
	       iops * (double)o->bs / 1048576.0);
	printf("     \"lat_us\": {\"p50\": %.2f, \"p99\": %.2f, \"p99.9\": %.2f},\n",
	       lat_percentile(r->lat, r->ios, 500) / 1e3, lat_percentile(r->lat, r->ios, 990) / 1e3,
	       lat_percentile(r->lat, r->ios, 999) / 1e3);
	printf("     \"calls\": %llu, \"tasks\": %llu, \"calls_per_task\": %.4f, "
	       "\"completion_batches\": %llu, \"doorbells\": %llu, \"driver_wakes\": %llu, "
	       "\"ring_polls\": %llu, \"ring_polls_caught\": %llu, \"slots_per_call\": {",
	       (unsigned long long)r->stats.io_calls, (unsigned long long)r->stats.tasks,
	       r->stats.tasks ? (double)r->stats.io_calls / (double)r->stats.tasks : 0,
	       (unsigned long long)r->stats.completion_msgs, (unsigned long long)r->stats.doorbells,
	       (unsigned long long)r->stats.driver_wakes, (unsigned long long)r->stats.ring_polls,
	       (unsigned long long)r->stats.ring_polls_caught);
	for (unsigned b = 0; b < HBK_HIST_BUCKETS; b++)
		printf("%s\"%s\": %llu", b ? ", " : "", hist_label[b], (unsigned long long)r->stats.hist[b]);
	printf("},\n     \"violations\": {");
	for (unsigned k = 1, n = 0; k < HBK_RULES; k++)
		if (r->stats.violations[k])
			printf("%s\"HBK-C%02u\": %llu", n++ ? ", " : "", k,
			       (unsigned long long)r->stats.violations[k]);
	/* Host and driver, or null when the driver's CPU is not known. */
	char cpu[32] = "null", dcpu[32] = "null";
	if (r->driver_cpu >= 0) {
		snprintf(cpu, sizeof(cpu), "%.3f",
			 r->ios ? (r->host_cpu + r->driver_cpu) / (double)r->ios * 1e6 : 0);
		snprintf(dcpu, sizeof(dcpu), "%.3f", r->driver_cpu);
	}
	printf("},\n     \"cpu_us_per_io\": %s, \"host_cpu_s\": %.3f, \"driver_cpu_s\": %s}%s\n",
	       cpu, r->host_cpu, dcpu, last ? "" : ",");
}

/* Formats bundled / per-task with fmt into buf, or gives `none` when the
 * per-task run completed no I/O (no NaN or inf in JSON or the table). */
static const char *ratio_str(char *buf, size_t n, double bundled, double per_task,
			     const char *fmt, const char *none)
{
	if (!(per_task > 0))
		return none;
	snprintf(buf, n, fmt, bundled / per_task);
	return buf;
}

/*
 * The story's experiment: the workloads its team ran with fio against the
 * RAID 5 controller (4 jobs x iodepth 32; 1 MiB sequential writes at
 * iodepth 32), each on the per-task path and then the bundled path, in one
 * table with the bundled path's slots-per-call histogram.  Their fio ran
 * buffered I/O, which reaches a device one request per job thread at a
 * time whatever iodepth says; the last row is that arrival pattern
 * (psync, 4 jobs).
 */
static const struct seed_job {
	const char *label;
	enum rw rw;
	unsigned rwmixread, numjobs, iodepth;
	uint64_t bs;
	bool psync;
} seed_jobs[] = {
	{ "4k randrw 70/30", RW_RANDRW, 70, 4, 32, 4096, false },
	{ "4k randread", RW_RANDREAD, 100, 4, 32, 4096, false },
	{ "4k randwrite", RW_RANDWRITE, 0, 4, 32, 4096, false },
	{ "1m write", RW_WRITE, 0, 1, 32, 1 << 20, false },
	{ "16k randrw 70/30", RW_RANDRW, 70, 4, 32, 16384, false },
	{ "64k randrw 70/30", RW_RANDRW, 70, 4, 32, 65536, false },
	{ "4k rw70/30 psync", RW_RANDRW, 70, 4, 1, 4096, true },
};

static int run_suite(const struct bench_opts *base)
{
	static const char *const rw_label[] = { "read", "write", "randread", "randwrite",
						"randrw", "rw" };
	struct result *res = calloc(2 * HBK_ARRAY_SIZE(seed_jobs), sizeof(*res));
	if (!res)
		return 1;
	int rc = 0;
	if (!base->json)
		printf("%-18s %5s %11s %9s %11s %9s %7s   bundled slots per call (1/2/3-4/5-8/9-16/17-32)\n",
		       "workload", "jobs", "per-task", "MiB/s", "bundled", "MiB/s", "ratio");
	else
		printf("{\"suite\": \"seed\", \"results\": [\n");
	fflush(stdout);   /* before the first driver's lines on stderr, in a shared log too */
	for (unsigned k = 0; k < HBK_ARRAY_SIZE(seed_jobs); k++) {
		const struct seed_job *sj = &seed_jobs[k];
		struct bench_opts o = *base;
		o.rw = sj->rw;
		o.rwmixread = sj->rwmixread;
		o.numjobs = sj->numjobs;
		o.iodepth = sj->iodepth;
		o.bs = sj->bs;
		o.psync = sj->psync;
		o.name = rw_label[sj->rw];
		struct result *r = &res[2 * k];
		int err = run_mode(&o, HBK_MODE_PER_TASK, &r[0]);
		if (!err)
			err = run_mode(&o, HBK_MODE_BUNDLED, &r[1]);
		if (err) {
			/* The list ends with the workload that failed, so the JSON
			 * stays whole (strerror's text needs no escapes). */
			if (base->json)
				printf("    {\"workload\": \"%s\", \"error\": \"%s\"}\n", sj->label,
				       hbk_strerror(err));
			rc = 1;
			break;
		}
		double iops[2], mib[2];
		char ratio[32];
		for (unsigned m = 0; m < 2; m++) {
			iops[m] = (double)r[m].ios / r[m].seconds;
			mib[m] = iops[m] * (double)o.bs / 1048576.0;
			rc |= r[m].errors != 0;
		}
		if (base->json) {
			for (unsigned m = 0; m < 2; m++)
				print_json(&o, &r[m], false);
			printf("    {\"workload\": \"%s\", \"bundled_over_per_task\": %s}%s\n",
			       sj->label, ratio_str(ratio, sizeof(ratio), iops[1], iops[0], "%.3f", "null"),
			       k + 1 == HBK_ARRAY_SIZE(seed_jobs) ? "" : ",");
			continue;
		}
		printf("%-18s %2ux%-2u %11.0f %9.1f %11.0f %9.1f %7s  ", sj->label, o.numjobs,
		       o.iodepth, iops[0], mib[0], iops[1], mib[1],
		       ratio_str(ratio, sizeof(ratio), iops[1], iops[0], "%.2fx", "-"));
		for (unsigned b = 0; b < HBK_HIST_BUCKETS; b++)
			printf("%s%llu", b ? "/" : " ", (unsigned long long)r[1].stats.hist[b]);
		printf("\n");
		fflush(stdout);
	}
	if (base->json)
		printf("]}\n");
	free(res);
	return rc;
}

static void bench_usage(FILE *f)
{
	fprintf(f,
		"usage: hbakit bench [options]\n"
		"  --rw read|write|randread|randwrite|randrw|rw   (randread)\n"
		"  --rwmixread PCT        reads in a mixed workload (50)\n"
		"  --bs SIZE              block size (4k)\n"
		"  --iodepth N            I/Os in flight per job (32)\n"
		"  --ioengine async|psync async: iodepth I/Os in flight per job, the next\n"
		"                         issued from the completion (default); psync: a\n"
		"                         thread per job, one I/O at a time (iodepth 1)\n"
		"  --numjobs N            jobs (1)\n"
		"  --runtime SECONDS      (5) or --size BYTES per job\n"
		"  --span BYTES           I/O only to the first BYTES of the LUN (all of it)\n"
		"  --warmup               read the span once before each measured run, so a\n"
		"                         controller cache holds it (each run starts the driver)\n"
		"  --mode per-task|bundled|both   (both: a driver for each path in turn)\n"
		"  --driver PATH          driver executable (the ram driver)\n"
		"  --driver-arg K=V       option for the driver, repeatable\n"
		"  --attach SOCKET        use a driver started with --listen SOCKET; it serves\n"
		"                         one host and exits, so one run: give --mode per-task\n"
		"                         or bundled (no both, no --suite)\n"
		"  --lun N                LUN index (0)\n"
		"  --poll-us N            bundled: poll the completion ring N us before\n"
		"                         sleeping (100; 0 or -1: never)\n"
		"  --output-format normal|json\n"
		"  --suite seed           the story's workloads on both paths, one table\n");
}

int cli_bench(int argc, char **argv)
{
	struct bench_opts o = { .rw = RW_RANDREAD, .rwmixread = 50, .bs = 4096, .iodepth = 32,
				.numjobs = 1, .runtime = 5, .both = true, .name = "randread" };
	cli_ctl_init(&o.ctl, argv[0], "hbakit bench");
	o.ctl.mode_both = true;
	static const char *const rw_names[] = { "read", "write", "randread", "randwrite", "randrw", "rw" };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (cli_is_help(a)) {
			bench_usage(stdout);
			return 0;
		}
		int r = cli_ctl_option(&o.ctl, argc, argv, &i);
		if (r < 0)
			return 2;
		if (r) {
			if (!strncmp(a, "--mode", 6))
				o.both = o.ctl.mode == HBK_MODE_AUTO;
			continue;
		}
		if (a[0] != '-') {
			cli_bad_arg("hbakit bench", a);
			bench_usage(stderr);
			return 2;
		}
		char key[64];
		bool eq = strchr(a, '=') != NULL, known = true;
		const char *v = cli_option_split(argc, argv, &i, key, sizeof(key));
		bool ok = v != NULL;
		uint64_t num = 0;
		if (!strcmp(key, "--rw")) {
			ok = false;
			for (unsigned k = 0; k < HBK_ARRAY_SIZE(rw_names); k++)
				if (v && !strcmp(v, rw_names[k])) {
					o.rw = (enum rw)k;
					o.name = rw_names[k];
					ok = true;
				}
		} else if (!strcmp(key, "--rwmixread")) {
			ok = ok && hbk_parse_size(v, &num) && num <= 100;
			o.rwmixread = (unsigned)num;
		} else if (!strcmp(key, "--bs")) {
			ok = ok && hbk_parse_size(v, &o.bs) && o.bs;
		} else if (!strcmp(key, "--iodepth")) {
			ok = ok && hbk_parse_size(v, &num) && num && num <= 4096;
			o.iodepth = (unsigned)num;
		} else if (!strcmp(key, "--ioengine")) {
			ok = ok && (!strcmp(v, "async") || !strcmp(v, "psync"));
			o.psync = ok && !strcmp(v, "psync");
		} else if (!strcmp(key, "--numjobs")) {
			ok = ok && hbk_parse_size(v, &num) && num && num <= 64;
			o.numjobs = (unsigned)num;
		} else if (!strcmp(key, "--runtime")) {
			char *end;
			o.runtime = v ? strtod(v, &end) : 0;
			/* A day at most: no inf or nan, whose cast is undefined. */
			ok = ok && *end == 0 && o.runtime > 0 && o.runtime <= 86400;
		} else if (!strcmp(key, "--size")) {
			ok = ok && hbk_parse_size(v, &o.size) && o.size;
		} else if (!strcmp(key, "--span")) {
			ok = ok && hbk_parse_size(v, &o.span) && o.span;
		} else if (!strcmp(key, "--warmup")) {
			o.warmup = true;
			ok = true;
			if (!eq)
				i--;   /* a flag: it takes no value */
		} else if (!strcmp(key, "--lun")) {
			ok = ok && hbk_parse_size(v, &num) && num <= UINT32_MAX;
			o.lun = (unsigned)num;
		} else if (!strcmp(key, "--suite")) {
			ok = ok && !strcmp(v, "seed");
			o.suite = ok;
		} else if (!strcmp(key, "--output-format")) {
			ok = ok && (!strcmp(v, "normal") || !strcmp(v, "json"));
			o.json = ok && !strcmp(v, "json");
		} else {
			ok = known = false;
		}
		if (!ok) {
			cli_bad_option("hbakit bench", key, v, known);
			bench_usage(stderr);
			return 2;
		}
	}
	/* A driver started with --listen serves the first host that attaches
	 * and exits when it leaves: one run, on one path. */
	if (o.ctl.attach && o.suite) {
		fprintf(stderr, "hbakit bench: --suite starts a driver for each of its runs; it cannot "
			"--attach (a driver started with --listen serves one host)\n");
		return 2;
	}
	if (o.ctl.attach && o.both) {
		fprintf(stderr, "hbakit bench: a driver started with --listen serves one host, one run: "
			"with --attach give --mode per-task or --mode bundled\n");
		return 2;
	}
	if (o.span && o.span < o.bs) {
		fprintf(stderr, "hbakit bench: --span must hold at least one block of --bs\n");
		return 2;
	}
	if (o.suite)
		return run_suite(&o);
	enum hbk_ctl_mode modes[2] = { HBK_MODE_PER_TASK, HBK_MODE_BUNDLED };
	unsigned first = 0, last = 1;
	if (!o.both)
		first = last = o.ctl.mode == HBK_MODE_PER_TASK ? 0 : 1;
	struct result res[2];
	if (o.json)
		printf("{\"results\": [\n");
	for (unsigned m = first; m <= last; m++) {
		int err = run_mode(&o, modes[m], &res[m]);
		if (err) {
			/* The list ends with the run that failed, so the JSON stays
			 * whole (strerror's text needs no escapes). */
			if (o.json)
				printf("    {\"mode\": \"%s\", \"error\": \"%s\"}\n]}\n",
				       m ? "bundled" : "per-task", hbk_strerror(err));
			return 1;
		}
		if (o.json)
			print_json(&o, &res[m], m == last);
		else
			print_normal(&o, &res[m]);
	}
	char ratio[32];
	double bundled = 0, per_task = 0;
	if (o.both) {
		bundled = (double)res[1].ios / res[1].seconds;
		per_task = (double)res[0].ios / res[0].seconds;
	}
	if (o.json) {
		printf("]");
		if (o.both)
			printf(", \"bundled_over_per_task\": %s",
			       ratio_str(ratio, sizeof(ratio), bundled, per_task, "%.3f", "null"));
		printf("}\n");
	} else if (o.both) {
		printf("bundled / per-task IOPS: %s\n",
		       ratio_str(ratio, sizeof(ratio), bundled, per_task, "%.2fx", "-"));
	}
	return res[first].errors || res[last].errors ? 1 : 0;
}
