/* SPDX-License-Identifier: MIT */
/*
 * nbd-rounds: the NBD client of tests/test_nbdkit_flush_death.sh.  `run`
 * writes rounds of a pattern over a range on several connections at once
 * (block b of round r on connection (b + r) % N, all of a round in flight
 * together), then flushes on one connection, until a command fails; after
 * each flushed round it records in a state file the last round a flush made
 * durable and the last one that may have reached the disk.  `check` reads
 * the range back on one connection: every block must hold a round between
 * those two.  Failures other than EIO make `run` fail.
 */
#include <errno.h>
#include <libnbd.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BS        4096u
#define MAX_CONNS 16

static void die(const char *what)
{
	fprintf(stderr, "nbd-rounds: %s: %s\n", what, nbd_get_error());
	exit(1);
}

static void fill(uint8_t *p, long round, uint64_t block)
{
	for (unsigned i = 0; i < BS; i += 8) {
		uint64_t v = block << 20 ^ (uint64_t)round << 40 ^ i ^ 0x5a5a000000000000ull;
		memcpy(p + i, &v, 8);
	}
}

static void save(const char *path, long durable, long attempted)
{
	FILE *f = fopen(path, "w");
	if (!f || fprintf(f, "%ld %ld\n", durable, attempted) < 0 || fclose(f)) {
		perror(path);
		exit(1);
	}
}

/* Counts a failed command; false when its error is not EIO. */
static bool failed_with_eio(const char *what, int *fails)
{
	(*fails)++;
	if (nbd_get_errno() == EIO)
		return true;
	fprintf(stderr, "nbd-rounds: %s failed with %s, not EIO\n", what, nbd_get_error());
	return false;
}

static int run(const char *uri, int n, uint64_t nblocks, const char *state)
{
	struct nbd_handle *h[MAX_CONNS];
	uint8_t *buf = malloc(nblocks * BS);
	long durable = -1, r;
	int fails = 0;
	bool eio = true;
	if (!buf)
		die("malloc");
	for (int i = 0; i < n; i++)
		if (!(h[i] = nbd_create()) || nbd_connect_uri(h[i], uri))
			die("connect");
	save(state, -1, 0);
	for (r = 0; !fails; r++) {
		for (uint64_t b = 0; b < nblocks; b++)
			fill(buf + b * BS, r, b);
		for (uint64_t b = 0; b < nblocks && !fails; b++)
			if (nbd_aio_pwrite(h[(b + r) % n], buf + b * BS, BS, b * BS, NBD_NULL_COMPLETION, 0) < 0)
				eio &= failed_with_eio("submitting a write", &fails);
		for (int i = 0; i < n; i++) {
			int64_t cookie;
			while (nbd_aio_in_flight(h[i]) > 0)
				if (nbd_poll(h[i], -1) < 0)
					die("poll");
			while ((cookie = nbd_aio_peek_command_completed(h[i])) > 0)
				if (nbd_aio_command_completed(h[i], cookie) < 0)
					eio &= failed_with_eio("a write", &fails);
		}
		if (fails)
			break;
		if (nbd_flush(h[r % n], 0)) {
			eio &= failed_with_eio("a flush", &fails);
			break;
		}
		durable = r;
		save(state, durable, r + 1);   /* round r + 1 may reach the disk in part */
	}
	for (int i = 0; i < n; i++)
		nbd_close(h[i]);
	printf("run: round %ld durable, stopped in round %ld by %d failed command(s)\n", durable, r, fails);
	free(buf);
	return eio ? 0 : 1;
}

static int check(const char *uri, uint64_t nblocks, const char *state)
{
	long durable, attempted;
	unsigned bad = 0;
	uint8_t got[BS], want[BS];
	FILE *f = fopen(state, "r");
	if (!f || fscanf(f, "%ld %ld", &durable, &attempted) != 2) {
		fprintf(stderr, "nbd-rounds: cannot read %s\n", state);
		return 1;
	}
	fclose(f);
	struct nbd_handle *h = nbd_create();
	if (!h || nbd_connect_uri(h, uri))
		die("connect");
	for (uint64_t b = 0; b < nblocks; b++) {
		bool match = false;
		if (nbd_pread(h, got, BS, b * BS, 0))
			die("read");
		for (long r = durable < 0 ? 0 : durable; r <= attempted && !match; r++) {
			fill(want, r, b);
			match = !memcmp(want, got, BS);
		}
		if (!match && durable >= 0 && bad++ < 5)
			fprintf(stderr, "nbd-rounds: block %llu holds no round from %ld to %ld\n",
				(unsigned long long)b, durable, attempted);
	}
	nbd_close(h);
	printf("check: rounds %ld..%ld, %u block(s) lost\n", durable, attempted, bad);
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 6 && !strcmp(argv[1], "run") && atoi(argv[3]) > 0 && atoi(argv[3]) <= MAX_CONNS)
		return run(argv[2], atoi(argv[3]), strtoull(argv[4], NULL, 0), argv[5]);
	if (argc == 5 && !strcmp(argv[1], "check"))
		return check(argv[2], strtoull(argv[3], NULL, 0), argv[4]);
	fprintf(stderr, "usage: nbd-rounds run URI CONNECTIONS BLOCKS STATE\n"
			"       nbd-rounds check URI BLOCKS STATE\n");
	return 2;
}
