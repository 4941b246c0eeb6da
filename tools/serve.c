/* SPDX-License-Identifier: MIT */
/*
 * hbakit serve iscsi: serves the targets and LUNs of a controller to iSCSI
 * initiators until SIGINT or SIGTERM.  Opens the controller (the same
 * driver options as bench and info), starts the iSCSI target on
 * --listen, prints "hbakit iscsi: listening on ADDR:PORT, N target(s)" and
 * writes "ADDR PORT" to --ready-file once listening; on a signal it stops
 * accepting, ends the sessions, closes the controller and exits 0.
 */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "hbk/iscsi.h"
#include "tools/cli.h"

static void serve_usage(FILE *f)
{
	fprintf(f,
		"usage: hbakit serve iscsi [options]\n"
		"  --driver PATH          driver executable (the ram driver)\n"
		"  --driver-arg K=V       option for the driver, repeatable\n"
		"  --attach SOCKET        use a driver started with --listen\n"
		"  --mode auto|bundled|per-task   I/O path (auto)\n"
		"  --poll-us N            bundled: poll the completion ring N us before\n"
		"                         sleeping (100; 0 or -1: never)\n"
		"  --listen ADDR:PORT     address to listen on (127.0.0.1:3260; port 0: any free)\n"
		"  --iqn-prefix IQN       target names are IQN:tN (" HBK_ISCSI_IQN_PREFIX ")\n"
		"  --chap-user U --chap-secret S\n"
		"                         require one-way CHAP with these credentials\n"
		"  --mutual-chap-user U --mutual-chap-secret S\n"
		"                         the target's credentials for mutual CHAP\n"
		"  --ready-file PATH      once listening, write \"ADDR PORT\" there\n"
		"  --max-connections N    connections at once (%d)\n"
		"  --login-timeout MS     a login not done by then is closed (%d)\n",
		HBK_ISCSI_MAX_CONNECTIONS, HBK_ISCSI_LOGIN_TIMEOUT_MS);
}

/*
 * Checks a --listen address before anything starts: "ADDR:PORT" or
 * "[ADDR]:PORT" with a port from 0 to 65535 and an address that resolves
 * (as hbk_iscsi_start will take it).  Returns false with why filled in.
 * A failure to resolve that may pass (a name server not answering) is left
 * for the start to report.
 */
static bool good_listen(const char *spec, char *why, size_t size)
{
	char host[256];
	const char *port, *end;
	size_t hlen;
	if (spec[0] == '[') {
		end = strchr(spec, ']');
		if (!end || end[1] != ':') {
			snprintf(why, size, "want [ADDR]:PORT");
			return false;
		}
		hlen = (size_t)(end - spec - 1);
		spec++;
		port = end + 2;
	} else {
		end = strrchr(spec, ':');
		if (!end || strchr(spec, ':') != end) {
			snprintf(why, size, "want ADDR:PORT (or [IPV6]:PORT)");
			return false;
		}
		hlen = (size_t)(end - spec);
		port = end + 1;
	}
	size_t plen = strspn(port, "0123456789");
	if (!hlen || hlen >= sizeof(host)) {
		snprintf(why, size, "no address before the port");
		return false;
	}
	if (!plen || port[plen] || plen > 5 || atoi(port) > 65535) {
		snprintf(why, size, "the port must be a number from 0 to 65535");
		return false;
	}
	memcpy(host, spec, hlen);
	host[hlen] = 0;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *ai;
	int gai = getaddrinfo(host, port, &hints, &ai);
	if (!gai) {
		freeaddrinfo(ai);
		return true;
	}
	if (gai == EAI_AGAIN || gai == EAI_MEMORY || gai == EAI_SYSTEM)
		return true;
	snprintf(why, size, "%s", gai_strerror(gai));
	return false;
}

/* Writes "ADDR PORT\n" to path through a temporary file and a rename, so a
 * reader sees all of it or nothing. */
static int write_ready(const char *path, const char *addr, uint16_t port)
{
	char tmp[4096];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -errno;
	int err = fprintf(f, "%s %u\n", addr, port) < 0 ? -EIO : 0;
	if (fclose(f) && !err)
		err = -errno;
	if (!err && rename(tmp, path))
		err = -errno;
	if (err)
		unlink(tmp);
	return err;
}

int cli_serve(int argc, char **argv)
{
	if (argc >= 2 && cli_is_help(argv[1])) {
		serve_usage(stdout);
		return 0;
	}
	if (argc < 2 || strcmp(argv[1], "iscsi")) {
		if (argc < 2)
			fprintf(stderr, "hbakit serve: the protocol to serve is 'iscsi'\n");
		else
			fprintf(stderr, "hbakit serve: unknown protocol '%s': the protocol to serve is "
				"'iscsi'\n", argv[1]);
		serve_usage(stderr);
		return 2;
	}
	struct cli_ctl ctl;
	struct hbk_iscsi_opts io = { .listen = "127.0.0.1:3260" };
	const char *ready = NULL;
	cli_ctl_init(&ctl, argv[0], "hbakit serve iscsi");
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		if (cli_is_help(a)) {
			serve_usage(stdout);
			return 0;
		}
		int r = cli_ctl_option(&ctl, argc, argv, &i);
		if (r < 0)
			return 2;
		if (r)
			continue;
		if (a[0] != '-') {
			cli_bad_arg("hbakit serve iscsi", a);
			serve_usage(stderr);
			return 2;
		}
		char key[64];
		const char *v = cli_option_split(argc, argv, &i, key, sizeof(key));
		bool ok = v != NULL, known = true;
		uint64_t num = 0;
		if (!strcmp(key, "--listen"))
			io.listen = v;
		else if (!strcmp(key, "--iqn-prefix"))
			io.iqn_prefix = v;
		else if (!strcmp(key, "--chap-user"))
			io.chap_user = v;
		else if (!strcmp(key, "--chap-secret"))
			io.chap_secret = v;
		else if (!strcmp(key, "--mutual-chap-user"))
			io.mutual_user = v;
		else if (!strcmp(key, "--mutual-chap-secret"))
			io.mutual_secret = v;
		else if (!strcmp(key, "--ready-file"))
			ready = v;
		else if (!strcmp(key, "--max-connections")) {
			ok = ok && hbk_parse_size(v, &num) && num && num <= 65536;
			io.max_connections = (unsigned)num;
		} else if (!strcmp(key, "--login-timeout")) {
			ok = ok && hbk_parse_size(v, &num) && num && num <= 3600000;
			io.login_timeout_ms = (uint32_t)num;
		} else
			ok = known = false;
		if (!ok) {
			cli_bad_option("hbakit serve iscsi", key, v, known);
			serve_usage(stderr);
			return 2;
		}
	}
	if (!io.chap_user != !io.chap_secret || !io.mutual_user != !io.mutual_secret ||
	    (io.mutual_user && !io.chap_user)) {
		fprintf(stderr, "hbakit serve iscsi: --chap-user and --chap-secret go together, "
			"as do the --mutual-chap-* pair, which needs the first pair\n");
		return 2;
	}
	char why[128];
	if (!good_listen(io.listen, why, sizeof(why))) {
		fprintf(stderr, "hbakit serve iscsi: --listen %s: %s\n", io.listen, why);
		return 2;
	}

	/* SIGINT and SIGTERM are blocked before any thread starts, so every
	 * thread inherits the mask and the signal stays pending until the
	 * main thread takes it in sigwait below: no handler runs on whichever
	 * thread the kernel picked (perhaps one asleep in a system call a
	 * sanitizer's runtime defers handlers across). */
	sigset_t stops;
	sigemptyset(&stops);
	sigaddset(&stops, SIGINT);
	sigaddset(&stops, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stops, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct hbk_ctl *c;
	if (cli_ctl_open(&ctl, ctl.mode, &c))
		return 1;
	io.ctl = c;
	struct hbk_iscsi *t;
	int err = hbk_iscsi_start(&io, &t);
	if (err) {
		fprintf(stderr, "hbakit serve iscsi: cannot start the target on %s: %s\n", io.listen,
			strerror(-err));
		hbk_ctl_close(c);
		return 1;
	}
	char addr[64];
	uint16_t port;
	hbk_iscsi_portal(t, addr, sizeof(addr), &port);
	printf(strchr(addr, ':') ? "hbakit iscsi: listening on [%s]:%u, %u target(s)\n" :
	       "hbakit iscsi: listening on %s:%u, %u target(s)\n", addr, port,
	       hbk_iscsi_target_count(t));
	fflush(stdout);
	int rc = 0;
	if (ready && (err = write_ready(ready, addr, port))) {
		fprintf(stderr, "hbakit serve iscsi: --ready-file %s: %s\n", ready, strerror(-err));
		rc = 1;
	}
	if (!rc) {
		int sig;
		sigwait(&stops, &sig);
	}
	hbk_iscsi_stop(t);
	hbk_ctl_close(c);
	return rc;
}
