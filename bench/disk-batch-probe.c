/* SPDX-License-Identifier: MIT */
/*
 * What a disk does with a batch: the yardstick behind bench/raid0-vs-fio.sh's
 * figures.  It reads 4 KiB blocks at random aligned offsets of the given
 * files with O_DIRECT through one io_uring, in batches submitted with one
 * io_uring_enter each, and prints for every batch size the median time to
 * the batch's first completion and to its last.  A disk that serves requests
 * one after another returns the first long before the last; one that answers
 * a batch as a whole (as a virtual disk may) returns them together, and then
 * whatever software lies between a completion and the next submission is
 * time the disk sits idle.  A second table sends two batches of 16, the
 * second some time after the first, and says whether they came back
 * together (the second joined the first's pass through the disk) or apart.
 * A third keeps 32 reads in flight, each sent again a fixed delay after it
 * came back: the IOPS a stack gets whose round trip from a completion to
 * the next submission takes that long, as a share of what no delay gets.
 *
 *   disk-batch-probe [--rounds N] FILE...
 *
 * The files must allow O_DIRECT and hold at least one 4 KiB block each.
 * Exit status 0, 1 on an I/O or set-up error, 2 on a usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"

#define BLOCK    4096u
#define MAX_N    64u    /* the largest batch */
#define MAX_FILES 16u

struct probe {
	struct io_uring ring;
	int fd[MAX_FILES];
	uint64_t blocks[MAX_FILES];
	unsigned nfiles;
	unsigned next_file;      /* round robin over the files */
	uint64_t rng;
	uint8_t *buf;            /* MAX_N * 2 blocks */
};

/* xorshift64: reproducible offsets, no shared state with anything else. */
static uint64_t rnd(struct probe *p)
{
	p->rng ^= p->rng << 13;
	p->rng ^= p->rng >> 7;
	p->rng ^= p->rng << 17;
	return p->rng;
}

/* Queues n reads tagged with group; they go with the next submit. */
/* Queues one read into buffer buf, tagged with tag.  0 or -EBUSY. */
static int queue_read(struct probe *p, unsigned buf, uint64_t tag)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&p->ring);
	if (!sqe)
		return -EBUSY;
	unsigned f = p->next_file++ % p->nfiles;
	uint64_t off = rnd(p) % p->blocks[f] * BLOCK;
	io_uring_prep_read(sqe, p->fd[f], p->buf + (size_t)buf * BLOCK, BLOCK, off);
	io_uring_sqe_set_data64(sqe, tag);
	return 0;
}

static int queue_reads(struct probe *p, unsigned n, unsigned group, unsigned first_buf)
{
	int err = 0;
	for (unsigned i = 0; i < n && !err; i++)
		err = queue_read(p, first_buf + i, group);
	return err;
}

/* Checks one completion: a whole block, or -EIO (said). */
static int check_cqe(const struct io_uring_cqe *cqe)
{
	if (cqe->res == (int)BLOCK)
		return 0;
	fprintf(stderr, "disk-batch-probe: read: %s\n",
		cqe->res < 0 ? strerror(-cqe->res) : "short read");
	return -EIO;
}

/* Takes the completions that came back, stamping each (ns since t0): *first
 * gets the first stamp of all, when[g] the latest of group g.  Returns how
 * many, or -EIO. */
static int take(struct probe *p, uint64_t t0, uint64_t *first, uint64_t when[2])
{
	struct io_uring_cqe *cqe;
	unsigned head, k = 0;
	io_uring_for_each_cqe(&p->ring, head, cqe) {
		if (check_cqe(cqe))
			return -EIO;
		uint64_t now = hbk_now_ns() - t0;
		if (!*first)
			*first = now;
		when[cqe->user_data & 1] = now;
		k++;
	}
	io_uring_cq_advance(&p->ring, k);
	return (int)k;
}

/* Spins until want completions came back (taken as they come: a sleep would
 * add the wake to every stamp); stamps as take().  Returns 0 or -errno. */
static int reap(struct probe *p, unsigned want, uint64_t t0, uint64_t *first, uint64_t when[2])
{
	for (unsigned got = 0; got < want;) {
		int k = take(p, t0, first, when);
		if (k < 0)
			return k;
		if (!k) {
			/* Enter the kernel now and then: completion work is run
			 * on this thread, on its way out of a system call. */
			int err = io_uring_get_events(&p->ring);
			if (err < 0 && err != -EINTR && err != -EAGAIN && err != -EBUSY)
				return err;
		}
		got += (unsigned)k;
	}
	return 0;
}

/* Submits what is queued; all of it, or -EIO. */
static int submit(struct probe *p, unsigned n)
{
	int r = io_uring_submit(&p->ring);
	if (r >= 0 && (unsigned)r != n) {
		fprintf(stderr, "disk-batch-probe: io_uring took %d of %u reads\n", r, n);
		return -EIO;
	}
	return r < 0 ? r : 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

static uint64_t median(uint64_t *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	return v[n / 2];
}

/* One batch of n, rounds times: prints the row unless quiet.  Returns the
 * median time to the last completion (ns), or -errno. */
static int64_t batch_row(struct probe *p, unsigned n, unsigned rounds, uint64_t *first_v,
			 uint64_t *last_v, bool quiet)
{
	uint64_t start = hbk_now_ns();
	for (unsigned r = 0; r < rounds; r++) {
		uint64_t when[2] = { 0, 0 };
		int err = queue_reads(p, n, 0, 0);
		uint64_t t0 = hbk_now_ns();
		first_v[r] = 0;
		if (!err && !(err = submit(p, n)))
			err = reap(p, n, t0, &first_v[r], when);
		if (err < 0)
			return err;
		last_v[r] = when[0];
	}
	double secs = (double)(hbk_now_ns() - start) / 1e9;
	uint64_t first = median(first_v, rounds), last = median(last_v, rounds);
	if (!quiet)
		printf("%5u %13.0f %13.0f %10.0f\n", n, (double)first / 1e3, (double)last / 1e3,
		       n * rounds / secs);
	return (int64_t)last;
}

/* Two batches of 16, the second gap_ns after the first: prints when each
 * came back (medians), whether together, and whether the first came back
 * later than a batch of 16 alone does (alone_ns): held back by the second. */
static int overlap_row(struct probe *p, uint64_t gap_ns, uint64_t alone_ns, unsigned rounds,
		       uint64_t *a_v, uint64_t *b_v)
{
	for (unsigned r = 0; r < rounds; r++) {
		uint64_t when[2] = { 0, 0 }, first = 0;
		int err = queue_reads(p, 16, 0, 0);
		uint64_t t0 = hbk_now_ns();
		int got = 0;
		if (!err && !(err = submit(p, 16))) {
			/* Takes what comes back meanwhile, so that its stamps are
			 * not those of the end of the gap. */
			while (got >= 0 && hbk_now_ns() - t0 < gap_ns) {
				int k = take(p, t0, &first, when);
				if (k > 0)
					got += k;
				else if (k < 0)
					got = k;
				else
					(void)io_uring_get_events(&p->ring);
			}
			err = got < 0 ? got : queue_reads(p, 16, 1, 16);
		}
		if (!err && !(err = submit(p, 16)))
			err = reap(p, 32 - (unsigned)got, t0, &first, when);
		if (err < 0)
			return err;
		a_v[r] = when[0];
		b_v[r] = when[1];
	}
	uint64_t a = median(a_v, rounds), b = median(b_v, rounds);
	/* Together: back within a tenth of the first's time of each other. */
	bool apart = b > a + a / 10;
	bool held = a > alone_ns + alone_ns / 4;
	printf("%9.0f %13.0f %13.0f   %s%s\n", (double)gap_ns / 1e3, (double)a / 1e3,
	       (double)b / 1e3, apart ? "apart" : "together",
	       held ? ", the first held back by the second" : "");
	return 0;
}

/* DEPTH reads in flight for dur_ns, each sent again delay_ns after it came
 * back (spinning: a sleep would add its wake to the delay).  Prints the
 * IOPS and their share of base (none: base 0).  Returns the IOPS, or
 * -errno. */
static double delay_row(struct probe *p, uint64_t delay_ns, uint64_t dur_ns, double base)
{
	enum { DEPTH = 32 };
	uint64_t due[DEPTH];
	bool back[DEPTH] = { false };     /* came back, not yet sent again */
	unsigned inflight = DEPTH;
	uint64_t done = 0, start = hbk_now_ns(), end = start + dur_ns;
	int err = 0;
	for (unsigned s = 0; s < DEPTH && !err; s++)
		err = queue_read(p, s, s);
	if (!err)
		err = submit(p, DEPTH);
	for (uint64_t now = start; !err && (inflight || now < end); now = hbk_now_ns()) {
		struct io_uring_cqe *cqe;
		unsigned head, k = 0;
		io_uring_for_each_cqe(&p->ring, head, cqe) {
			if ((err = check_cqe(cqe)))
				break;
			unsigned s = (unsigned)cqe->user_data;
			back[s] = true;
			due[s] = now + delay_ns;
			k++;
		}
		io_uring_cq_advance(&p->ring, k);
		inflight -= k;
		if (now < end)
			done += k;
		unsigned n = 0;
		for (unsigned s = 0; s < DEPTH && !err && now < end; s++)
			if (back[s] && due[s] <= now) {
				back[s] = false;
				err = queue_read(p, s, s);
				n++;
			}
		if (n && !err)
			err = submit(p, n);
		inflight += n;
		if (!k && !n && !err) {
			int e = io_uring_get_events(&p->ring);
			if (e < 0 && e != -EINTR && e != -EAGAIN && e != -EBUSY)
				err = e;
		}
	}
	if (err)
		return err;
	double iops = (double)done / ((double)dur_ns / 1e9);
	printf("%9.0f %10.0f", (double)delay_ns / 1e3, iops);
	if (base > 0)
		printf(" %9.2f", iops / base);
	printf("\n");
	return iops;
}

static void usage(void)
{
	fprintf(stderr, "usage: disk-batch-probe [--rounds N] FILE...\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static struct probe p;
	unsigned rounds = 200;
	int i = 1;
	for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
		if (!strcmp(argv[i], "--rounds") && i + 1 < argc) {
			char *end;
			unsigned long v = strtoul(argv[++i], &end, 10);
			if (*end || !v || v > 100000)
				usage();
			rounds = (unsigned)v;
		} else {
			usage();
		}
	}
	if (i == argc || argc - i > (int)MAX_FILES)
		usage();
	for (; i < argc; i++) {
		int fd = open(argv[i], O_RDONLY | O_DIRECT | O_CLOEXEC);
		struct stat st;
		if (fd < 0 || fstat(fd, &st)) {
			fprintf(stderr, "disk-batch-probe: %s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		off_t end = S_ISBLK(st.st_mode) ? lseek(fd, 0, SEEK_END) : st.st_size;
		uint64_t size = end > 0 ? (uint64_t)end : 0;
		if (size < BLOCK) {
			fprintf(stderr, "disk-batch-probe: %s: smaller than one block\n", argv[i]);
			return 1;
		}
		p.fd[p.nfiles] = fd;
		p.blocks[p.nfiles++] = size / BLOCK;
	}
	p.rng = 0x9e3779b97f4a7c15ull;
	if (posix_memalign((void **)&p.buf, BLOCK, (size_t)MAX_N * 2 * BLOCK)) {
		fprintf(stderr, "disk-batch-probe: out of memory\n");
		return 1;
	}
	int err = io_uring_queue_init(2 * MAX_N, &p.ring, 0);
	if (err) {
		fprintf(stderr, "disk-batch-probe: io_uring: %s\n", strerror(-err));
		return 1;
	}
	uint64_t *first_v = calloc(rounds, sizeof(uint64_t));
	uint64_t *last_v = calloc(rounds, sizeof(uint64_t));
	int status = 1;
	if (!first_v || !last_v) {
		fprintf(stderr, "disk-batch-probe: out of memory\n");
		goto out;
	}

	/* A short warm-up, so the first row does not pay for cold caches. */
	if (batch_row(&p, 1, HBK_MIN(rounds, 20u), first_v, last_v, true) < 0)
		goto io_error;
	printf("4 KiB O_DIRECT reads, one io_uring_enter per batch, median of %u rounds\n", rounds);
	printf("%5s %13s %13s %10s\n", "batch", "first (us)", "last (us)", "IOPS");
	int64_t d16 = 0;
	for (unsigned n = 1; n <= MAX_N; n *= 2) {
		int64_t last = batch_row(&p, n, rounds, first_v, last_v, false);
		if (last < 0)
			goto io_error;
		if (n == 16)
			d16 = last;
	}
	printf("two batches of 16, the second sent some time after the first\n");
	printf("%9s %13s %13s\n", "gap (us)", "first (us)", "second (us)");
	for (unsigned q = 1; q <= 4; q++)
		if (overlap_row(&p, (uint64_t)d16 * q / 4, (uint64_t)d16, rounds, first_v, last_v) < 0)
			goto io_error;
	/* rounds x 2.5 ms a row: half a second at the default. */
	printf("32 reads in flight, each sent again some time after it came back\n");
	printf("%9s %10s %9s\n", "delay (us)", "IOPS", "vs none");
	double base = 0;
	for (unsigned d = 0; d <= 300; d += d < 200 ? 50 : 100) {
		double iops = delay_row(&p, d * 1000ull, rounds * 2500000ull, base);
		if (iops < 0)
			goto io_error;
		if (!d)
			base = iops;
	}
	status = 0;
	goto out;
io_error:
	fprintf(stderr, "disk-batch-probe: the probe failed\n");
out:
	io_uring_queue_exit(&p.ring);
	free(first_v);
	free(last_v);
	free(p.buf);
	for (unsigned f = 0; f < p.nfiles; f++)
		close(p.fd[f]);
	return status;
}
