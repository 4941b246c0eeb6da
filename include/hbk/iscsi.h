/* SPDX-License-Identifier: MIT */
/*
 * hbakit iSCSI target (RFC 7143, ErrorRecoveryLevel 0): serves the targets
 * and LUNs of an open controller to iSCSI initiators over TCP.  Each hbakit
 * target id T is one iSCSI target named "<iqn-prefix>:t<T>" whose LUNs keep
 * their hbakit numbers; every SCSI command goes unchanged to the LUN through
 * the SAM layer (hbk_sam_submit), its data in the controller's shared arena.
 * Login with optional one-way or mutual CHAP, discovery by SendTargets,
 * header and data digests (CRC32C), R2T and Data-In sequencing, task
 * management through hbk_sam_tmf.  docs/iscsi.md describes the behaviour.
 */
#ifndef HBK_ISCSI_H
#define HBK_ISCSI_H

#include <stddef.h>
#include <stdint.h>

#include "hbk/host.h"

#define HBK_ISCSI_IQN_PREFIX      "iqn.2026-11.org.hbakit"
#define HBK_ISCSI_PORT            3260
#define HBK_ISCSI_MAX_CONNECTIONS 64
#define HBK_ISCSI_LOGIN_TIMEOUT_MS 10000
#define HBK_ISCSI_QUEUE_DEPTH     128   /* commands per session: the CmdSN window */

struct hbk_iscsi;

struct hbk_iscsi_opts {
	struct hbk_ctl *ctl;          /* the controller to serve; not owned */
	const char *listen;           /* "ADDR:PORT" or "[V6ADDR]:PORT"; NULL: 127.0.0.1:3260;
				       * port 0 picks a free port */
	const char *iqn_prefix;       /* NULL: HBK_ISCSI_IQN_PREFIX */
	const char *chap_user;        /* with chap_secret: every login must pass CHAP */
	const char *chap_secret;
	const char *mutual_user;      /* with mutual_secret: the target's own credentials, */
	const char *mutual_secret;    /* answered when the initiator challenges the target */
	unsigned max_connections;     /* 0: HBK_ISCSI_MAX_CONNECTIONS; more are closed at once */
	uint32_t login_timeout_ms;    /* 0: HBK_ISCSI_LOGIN_TIMEOUT_MS */
	uint32_t queue_depth;         /* 0: HBK_ISCSI_QUEUE_DEPTH; at most 512 */
};

/*
 * Starts the target: binds and listens on opts->listen and serves
 * connections on threads of its own until hbk_iscsi_stop.  The strings in
 * *opts are copied.  Returns 0 and *out, or -errno: -EINVAL for a bad
 * address, prefix or credential pair (chap_user without chap_secret, mutual
 * credentials without one-way ones), the bind or listen error otherwise.
 * Any thread; the controller must stay open until hbk_iscsi_stop returned.
 */
int hbk_iscsi_start(const struct hbk_iscsi_opts *opts, struct hbk_iscsi **out);

/*
 * The address and port the target listens on (the real port when port 0
 * was asked for): addr receives the numeric host ("127.0.0.1", "::1"),
 * NUL terminated.  Returns 0, or -ENOSPC when size is too small.  Any thread.
 */
int hbk_iscsi_portal(const struct hbk_iscsi *t, char *addr, size_t size, uint16_t *port);

/*
 * The number of iSCSI targets served right now: the distinct target ids of
 * the controller's live LUNs.  Any thread.
 */
unsigned hbk_iscsi_target_count(struct hbk_iscsi *t);

/*
 * Stops the target: refuses new connections, ends every session (commands
 * still at the controller finish there first and their buffers are freed),
 * joins the threads and frees t.  The controller stays open; close it
 * afterwards.  Any thread but one of the target's own (never from a SCSI
 * completion callback).
 */
void hbk_iscsi_stop(struct hbk_iscsi *t);

#endif /* HBK_ISCSI_H */
