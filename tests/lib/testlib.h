/* SPDX-License-Identifier: MIT */
/*
 * Helpers for hbakit's integration tests: where the built drivers are, opening
 * a controller on one of them, capturing what the library logs to stderr so a
 * test can assert that a contract rule fired, and data patterns for I/O checks.
 */
#ifndef HBK_TESTLIB_H
#define HBK_TESTLIB_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>

#include "hbk/host.h"

/* Path of a built binary below $BUILD (default "build"), e.g.
 * tl_path("drivers/hbk-ram").  Returns a static buffer per call slot. */
const char *tl_path(const char *rel);

/* Opens a controller on the driver at $BUILD/<rel>, with extra driver args
 * (NULL-terminated, may be NULL).  Returns what hbk_ctl_open returned. */
int tl_open(const char *rel, enum hbk_ctl_mode mode, const char *const *args,
	    uint32_t call_timeout_ms, uint32_t task_timeout_ms, struct hbk_ctl **c);

/* Starts capturing fd 2 into a temporary file; tl_capture_end stops and
 * returns what was written (static buffer, NUL-terminated, also echoed to the
 * real stderr so test logs keep it). */
void tl_capture_begin(void);
const char *tl_capture_end(void);

/* Fills/checks a deterministic pattern for (lba, block size, seed). */
void tl_fill(void *buf, uint64_t lba, uint32_t nblocks, uint32_t bs, uint32_t seed);
bool tl_check(const void *buf, uint64_t lba, uint32_t nblocks, uint32_t bs, uint32_t seed);

/* Snapshot of LUN l's info (hbk_lun_info), for assertions. */
struct hbk_lun_info tl_info(const struct hbk_lun *l);

/* Synchronous block I/O on LUN l; returns io.error. */
int tl_rw(struct hbk_lun *l, bool write, uint64_t lba, uint32_t nblocks, void *buf);

/*
 * Runs one CDB on LUN l as initiator `initiator` (0: the host) and returns
 * the SCSI status byte, or 0x100 + the service response when the task did
 * not complete, or -errno when it could not be submitted.
 */
int tl_scsi(struct hbk_lun *l, uint64_t initiator, const uint8_t *cdb, unsigned cdb_len,
	    enum hbk_dir dir, void *buf, uint64_t len);

/*
 * Checks that the driver behind l keeps reservations per initiator: one
 * initiator holds a WRITE EXCLUSIVE reservation, another's writes conflict
 * and its reads pass, and after the release everyone writes.  Uses blocks
 * lba..lba+7 of l (512-byte blocks) and leaves the reservation released.
 */
void tl_check_reservations_per_initiator(struct hbk_lun *l, uint64_t lba);

/*
 * An asynchronous load: n I/Os of 8 blocks of 512 bytes, all submitted at
 * once, at LBA lba(i) (NULL: 8i); writes carry tl_fill's pattern for seed,
 * reads land in data + 4096 i.  Completions count into outstanding and
 * errors under lock.  tl_load_start allocates (free with tl_load_free),
 * tl_load_wait waits until at most `left` I/Os are outstanding and returns
 * the errors so far.
 */
struct tl_load {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned n, outstanding, errors;
	struct hbk_blk_io *io;
	uint8_t *data;
};
void tl_load_start(struct tl_load *ld, struct hbk_lun *l, unsigned n, bool write,
		   uint64_t (*lba)(unsigned i), uint32_t seed);
unsigned tl_load_wait(struct tl_load *ld, unsigned left);
void tl_load_free(struct tl_load *ld);

#endif /* HBK_TESTLIB_H */
