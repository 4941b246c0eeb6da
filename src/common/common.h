/* SPDX-License-Identifier: MIT */
/*
 * Private helpers shared by the host library and the driver runtime: the one
 * logging function, monotonic time, message send/receive with validation of
 * everything that arrives, and the shared region's layout and mapping.
 */
#ifndef HBK_COMMON_H
#define HBK_COMMON_H

#include <linux/futex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "hbk/abi.h"

#define HBK_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define HBK_MIN(a, b) ((a) < (b) ? (a) : (b))
#define HBK_MAX(a, b) ((a) > (b) ? (a) : (b))

enum hbk_log_level { HBK_LOG_ERR = 0, HBK_LOG_WARN = 1, HBK_LOG_INFO = 2, HBK_LOG_DEBUG = 3 };

/*
 * The one logging function: "hbakit[<who>] <level>: <message>" on stderr,
 * one write per line so lines from several threads and processes never
 * interleave.  The level threshold comes from HBK_LOG (err, warn, info,
 * debug; default warn).  Any thread.
 */
void hbk_log(enum hbk_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void hbk_log_set_who(const char *who);
bool hbk_log_enabled(enum hbk_log_level level);

/* parse.c: a size as users write it, "4096", "64k", "1G", "2TiB" (binary
 * units k m g t).  True and *out, or false on anything else or past 2^64. */
bool hbk_parse_size(const char *s, uint64_t *out);

/*
 * A one-shot latch carrying a result: a blocking wrapper waits on it, the
 * completion of the asynchronous call it wraps opens it.  A futex word, not
 * a mutex and condvar: a completion costs at most one wake (a condvar's
 * waiter wakes into the mutex its signaller still holds, a second switch),
 * and none when the result came before the wait.  PENDING -> OPEN, or
 * PENDING -> SLEEPING -> OPEN + wake.  Initialise with HBK_LATCH_INIT (or
 * hbk_latch_reset to reuse one); hbk_latch_wait returns the result.
 */
enum { HBK_LATCH_PENDING, HBK_LATCH_SLEEPING, HBK_LATCH_OPEN };
struct hbk_latch {
	uint32_t state;
	int result;
};
#define HBK_LATCH_INIT { HBK_LATCH_PENDING, 0 }

static inline void hbk_latch_reset(struct hbk_latch *l)
{
	*l = (struct hbk_latch)HBK_LATCH_INIT;
}

static inline void hbk_latch_open(struct hbk_latch *l, int result)
{
	l->result = result;
	/* Release: pairs with the acquire in hbk_latch_wait, so the waiter
	 * sees result and everything the completion wrote. */
	if (__atomic_exchange_n(&l->state, HBK_LATCH_OPEN, __ATOMIC_RELEASE) == HBK_LATCH_SLEEPING)
		syscall(SYS_futex, &l->state, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	/* l may be gone by now (the waiter returned): the wake only names the
	 * address, and futex waiters recheck their word. */
}

static inline int hbk_latch_wait(struct hbk_latch *l)
{
	uint32_t v = HBK_LATCH_PENDING;
	if (__atomic_compare_exchange_n(&l->state, &v, HBK_LATCH_SLEEPING, false,
					__ATOMIC_ACQUIRE, __ATOMIC_ACQUIRE))
		while (__atomic_load_n(&l->state, __ATOMIC_ACQUIRE) != HBK_LATCH_OPEN)
			syscall(SYS_futex, &l->state, FUTEX_WAIT_PRIVATE, HBK_LATCH_SLEEPING,
				NULL, NULL, 0);
	return l->result;
}

/* A futex word in memory shared between processes (the region): waits
 * while *word == val (a wake, a signal or a changed word ends it), and
 * wakes every waiter on word.  Not the _PRIVATE operations: the kernel
 * must match the two processes' different addresses of one page. */
static inline void hbk_futex_wait_shared(uint32_t *word, uint32_t val)
{
	syscall(SYS_futex, word, FUTEX_WAIT, val, NULL, NULL, 0);
}

static inline void hbk_futex_wake_shared(uint32_t *word)
{
	syscall(SYS_futex, word, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

/* Names the calling thread (at most 15 characters show), so top -H, perf and
 * gdb tell the library's threads apart.  Called first thing by every thread
 * the library starts; failure only loses the name. */
static inline void hbk_thread_name(const char *name)
{
	(void)prctl(PR_SET_NAME, name, 0, 0, 0);
}

/* A spin-wait hint for the CPU (polling loops). */
static inline void hbk_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static inline uint64_t hbk_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The machine's physical memory in bytes (UINT64_MAX if it cannot be
 * told), for bounds on what the process commits to memory. */
static inline uint64_t hbk_mem_physical(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
	return pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : UINT64_MAX;
}

/* A cheap clock (a few ms of resolution) for deadlines, not for latency. */
static inline uint64_t hbk_coarse_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Name of a message type, for logs ("PROCESS_BUNDLED"); "?" if unknown. */
const char *hbk_msg_name(unsigned type);

/* Fills a message header. */
void hbk_msg_init(struct hbk_msg_hdr *h, unsigned type, uint32_t seq, uint32_t len);

/*
 * Sends one message (len bytes at msg, header already filled) and, when
 * pass_fd >= 0, that descriptor with SCM_RIGHTS.  Never raises SIGPIPE.
 * Returns 0 or -errno (-EPIPE/-ECONNRESET once the peer is gone).
 * Any thread: a SOCK_SEQPACKET message is sent whole or not at all.
 */
int hbk_msg_send(int sock, const void *msg, size_t len, int pass_fd);

/* hbk_msg_send with sendmsg flags added (MSG_DONTWAIT: -EAGAIN rather than
 * wait for the peer to make room). */
int hbk_msg_send_flags(int sock, const void *msg, size_t len, int pass_fd, int flags);

/*
 * Receives one message into buf (size >= HBK_MSG_MAX) and validates its
 * framing: magic, declared length equal to the bytes received, no
 * truncation, and the exact size its type requires (hbk_msg_expect).
 * A descriptor that came with it is stored in *fd_out (if fd_out is not
 * NULL, else closed).  timeout_ms < 0 waits forever.
 * Returns the message length, -ETIMEDOUT, -ECONNRESET at end of stream, or
 * -EBADMSG with *why (if not NULL) set to a static reason.  One thread per
 * socket direction.
 */
int hbk_msg_recv(int sock, void *buf, size_t size, int timeout_ms, int *fd_out,
		 const char **why);

/*
 * The exact length a message of this type and direction must have, or 0
 * for an unknown type.  reply selects the reply form of a call.
 */
size_t hbk_msg_expect(unsigned type, bool reply);

/* ---- Shared region ------------------------------------------------------ */

struct hbk_region {
	int      fd;
	void    *base;
	size_t   size;
	struct hbk_region_hdr *hdr;
	struct hbk_task     *cmds;
	struct hbk_response *resps;
	struct hbk_cring    *cring;
	uint32_t cring_entries;
	struct hbk_sring    *sring;
	uint32_t sring_entries;
	uint8_t *arena;
	uint64_t arena_size;
	uint32_t slots;
};

/*
 * Host: creates and maps a memfd region for `slots` slots and an arena of
 * arena_size bytes (rounded up to pages) and writes its header.  Returns 0
 * or -errno.
 */
int hbk_region_create(struct hbk_region *r, uint32_t slots, uint64_t arena_size);

/*
 * Driver: maps the region behind fd (taking ownership of fd) and validates
 * the header against the descriptor's real size: magic, ABI version,
 * header size, slot count <= HBK_MAX_TASKS, every part inside the region.
 * Returns 0, -EPROTO for a bad header, or -errno.
 */
int hbk_region_map(struct hbk_region *r, int fd);

void hbk_region_unmap(struct hbk_region *r);

/* Thread-safe strerror for -errno values. */
const char *hbk_strerror(int err);

#endif /* HBK_COMMON_H */
