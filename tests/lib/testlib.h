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

#endif /* HBK_TESTLIB_H */
