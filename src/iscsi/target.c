/* SPDX-License-Identifier: MIT */
/*
 * The iSCSI server: the listening socket and its thread, which accepts
 * connections (closing those beyond the connection limit), starts a thread
 * per connection and joins the threads of connections that ended; the
 * session table (one connection per session) with TSIH assignment and
 * session reinstatement; the naming of targets ("<prefix>:t<id>" for every
 * target id of the controller's live LUNs) and the I_T nexus identity each
 * session gives its commands.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "iscsi/iscsi_priv.h"

/* ---- Targets ------------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

unsigned hbk_iscsi_targets(struct hbk_iscsi *s, uint64_t *ids, unsigned max)
{
	unsigned n = hbk_ctl_lun_count(s->ctl), count = 0;
	uint64_t *all = n ? calloc(n, sizeof(*all)) : NULL;
	if (!all)
		return 0;
	for (unsigned i = 0; i < n; i++) {
		struct hbk_lun *l = hbk_ctl_lun(s->ctl, i);
		struct hbk_lun_info info;
		if (l && !hbk_lun_info(l, &info))
			all[count++] = info.target;
	}
	qsort(all, count, sizeof(*all), cmp_u64);
	unsigned distinct = 0;
	for (unsigned i = 0; i < count; i++) {
		if (i && all[i] == all[i - 1])
			continue;
		if (distinct < max)
			ids[distinct] = all[i];
		distinct++;
	}
	free(all);
	return distinct;
}

unsigned hbk_iscsi_target_count(struct hbk_iscsi *t)
{
	return hbk_iscsi_targets(t, NULL, 0);
}

struct hbk_lun *hbk_iscsi_find_lun(struct hbk_iscsi *s, uint64_t target, uint64_t lun)
{
	unsigned n = hbk_ctl_lun_count(s->ctl);
	for (unsigned i = 0; i < n; i++) {
		struct hbk_lun *l = hbk_ctl_lun(s->ctl, i);
		struct hbk_lun_info info;
		if (l && !hbk_lun_info(l, &info) && info.target == target && info.lun == lun)
			return l;
	}
	return NULL;
}

int hbk_iscsi_target_lookup(struct hbk_iscsi *s, const char *name, uint64_t *target)
{
	size_t plen = strlen(s->iqn_prefix);
	/* iSCSI names compare without regard to case (RFC 3722). */
	if (strncasecmp(name, s->iqn_prefix, plen) || name[plen] != ':' ||
	    (name[plen + 1] != 't' && name[plen + 1] != 'T'))
		return -ENOENT;
	const char *d = name + plen + 2;
	uint64_t id = 0;
	/* Only the canonical spelling: digits, no leading zero, no overflow. */
	if (!*d || (d[0] == '0' && d[1]) || strlen(d) > 19)
		return -ENOENT;
	for (; *d; d++) {
		if (*d < '0' || *d > '9')
			return -ENOENT;
		id = id * 10 + (uint64_t)(*d - '0');
	}
	unsigned n = hbk_ctl_lun_count(s->ctl);
	for (unsigned i = 0; i < n; i++) {
		struct hbk_lun *l = hbk_ctl_lun(s->ctl, i);
		struct hbk_lun_info info;
		if (l && !hbk_lun_info(l, &info) && info.target == id) {
			*target = id;
			return 0;
		}
	}
	return -ENOENT;
}

uint64_t hbk_iscsi_nexus_id(const char *initiator_name, const uint8_t isid[6])
{
	char text[HBK_ISCSI_NAME_MAX + 32];
	int n = snprintf(text, sizeof(text), "%s,i,0x%02x%02x%02x%02x%02x%02x", initiator_name,
			 isid[0], isid[1], isid[2], isid[3], isid[4], isid[5]);
	uint64_t h = 0xcbf29ce484222325ull;   /* FNV-1a 64 */
	for (int i = 0; i < n && i < (int)sizeof(text) - 1; i++) {
		h ^= (uint8_t)text[i];
		h *= 0x100000001b3ull;
	}
	return h ? h : 1;
}

/* Remembers the initiator port of c's normal session at each PERSISTENT
 * RESERVE OUT it sends: only a port that sent one can hold a registration,
 * so logins (an initiator may take a new ISID for every one) do not fill
 * the table.  A full table forgets the port noted least recently; READ
 * FULL STATUS shows a forgotten port in the SAS form.  s->lock held. */
void hbk_iscsi_port_note(struct hbk_iscsi *s, const struct hbk_iscsi_conn *c)
{
	struct hbk_iscsi_port *p = NULL;
	for (unsigned i = 0; i < s->nports && !p; i++)
		if (s->ports[i].nexus == c->nexus && !memcmp(s->ports[i].isid, c->isid, 6) &&
		    !strcmp(s->ports[i].name, c->initiator_name))
			p = &s->ports[i];
	if (!p && s->nports == s->ports_cap) {
		unsigned cap = s->ports_cap ? 2 * s->ports_cap : 8;
		if (cap <= HBK_ISCSI_PORTS_MAX && (p = realloc(s->ports, cap * sizeof(*p)))) {
			s->ports = p;
			s->ports_cap = cap;
			p = NULL;
		} else if (s->nports) {
			p = &s->ports[0];
			for (unsigned i = 1; i < s->nports; i++)
				if (s->ports[i].used < p->used)
					p = &s->ports[i];
		} else {
			return;
		}
	}
	if (!p)
		p = &s->ports[s->nports++];
	p->used = ++s->port_clock;
	p->nexus = c->nexus;
	memcpy(p->isid, c->isid, sizeof(p->isid));
	snprintf(p->name, sizeof(p->name), "%s", c->initiator_name);
}

/* The iSCSI TransportID of the port whose identity is nexus, into tid (room
 * for 4 + 244 bytes); 0 when no port of this target has that identity (it
 * may be another front end's, or the host's own).  s->lock held. */
static uint32_t port_tid(const struct hbk_iscsi *s, uint64_t nexus, uint8_t *tid)
{
	const struct hbk_iscsi_port *p = NULL;
	for (unsigned i = 0; i < s->nports && !p; i++)
		if (s->ports[i].nexus == nexus)
			p = &s->ports[i];
	if (!p)
		return 0;
	char text[HBK_ISCSI_NAME_MAX + 32];
	int n = snprintf(text, sizeof(text), "%s,i,0x%02x%02x%02x%02x%02x%02x", p->name,
			 p->isid[0], p->isid[1], p->isid[2], p->isid[3], p->isid[4], p->isid[5]);
	uint32_t body = ((uint32_t)n + 1 + 3) & ~3u;    /* NUL-terminated, a multiple of 4 */
	if (body < 20)
		body = 20;                              /* ADDITIONAL LENGTH at least 20 */
	memset(tid, 0, 4 + body);
	tid[0] = 0x40 | 0x05;                           /* FORMAT 01b, PROTOCOL iSCSI */
	put_be16(tid + 2, (uint16_t)body);              /* ADDITIONAL LENGTH */
	memcpy(tid + 4, text, (size_t)n);
	return 4 + body;
}

uint32_t hbk_iscsi_pr_full_status(struct hbk_iscsi *s, uint8_t *buf, uint32_t len, uint32_t cap)
{
	if (len < 8 || 8 + (uint64_t)get_be32(buf + 4) != len)
		return len;             /* cut short (or not the list at all) */
	uint8_t *out = malloc(cap);
	if (!out)
		return len;
	uint32_t n = 8;
	bool changed = false, fits = true;
	pthread_mutex_lock(&s->lock);
	for (uint32_t off = 8; off < len && fits;) {
		if (len - off < 24 || get_be32(buf + off + 20) > len - off - 24) {
			fits = false;   /* malformed */
			break;
		}
		uint32_t tlen = get_be32(buf + off + 20);
		const uint8_t *tid = buf + off + 24;
		uint8_t itid[4 + 248];
		uint32_t ilen = 0;
		/* The emulation's SAS form: FORMAT 00b, protocol 6h, the
		 * identity as the SAS ADDRESS (bytes 4..11). */
		if (tlen == 24 && tid[0] == 0x06)
			ilen = port_tid(s, get_be64(tid + 4), itid);
		uint32_t dlen = 24 + (ilen ? ilen : tlen);
		if (dlen > cap - n) {
			fits = false;
			break;
		}
		memcpy(out + n, buf + off, 24);
		if (ilen) {
			put_be32(out + n + 20, ilen);   /* ADDITIONAL DESCRIPTOR LENGTH */
			memcpy(out + n + 24, itid, ilen);
			changed = true;
		} else {
			memcpy(out + n + 24, tid, tlen);
		}
		n += dlen;
		off += 24 + tlen;
	}
	pthread_mutex_unlock(&s->lock);
	if (fits && changed) {
		memcpy(out, buf, 8);
		put_be32(out + 4, n - 8);               /* ADDITIONAL LENGTH */
		memcpy(buf, out, n);
		len = n;
	}
	free(out);
	return len;
}

/* ---- Sessions -------------------------------------------------------------------------- */

#define NEXUS_WAIT_MS   5000    /* the most a login waits for the end of its nexus' last session */
#define NEXUS_POLL_MS   5

/* Whether o's initiator has hung up (a dropped connection, or one closed
 * after its logout) though o's thread may not have seen it yet.  s->lock
 * held: the teardown closes the socket under it. */
static bool peer_gone(const struct hbk_iscsi_conn *o)
{
	struct pollfd p = { .fd = o->fd, .events = POLLRDHUP };
	return o->fd >= 0 && poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/*
 * A session of the same I_T nexus that is ending (reinstated, dropped)
 * still has to tell the controller that the nexus is gone: the new session
 * waits for that (RFC 7143 6.3.5), or the loss would erase what the new
 * session establishes at the LUN.  So does the new session of an initiator
 * whose other session (another ISID, so another nexus) it has already
 * dropped or logged out of: it expects the LUN to have forgotten what that
 * nexus held (a prevention of medium removal, a RESERVE), and the old
 * connection's thread may not have seen the hang-up yet.  Bounded: the old
 * session only waits for its commands at the controller to end.
 */
static void wait_nexus_lost(struct hbk_iscsi *s, struct hbk_iscsi_conn *c)
{
	for (unsigned waited = 0;; waited += NEXUS_POLL_MS) {
		bool busy = false;
		pthread_mutex_lock(&s->lock);
		for (struct hbk_iscsi_conn *o = s->conns; o && !busy; o = o->next)
			busy = o != c && o->nexus_held && o->target == c->target &&
			       (o->nexus == c->nexus ||
				(!strcmp(o->initiator_name, c->initiator_name) && peer_gone(o)));
		pthread_mutex_unlock(&s->lock);
		if (!busy)
			return;
		if (waited >= NEXUS_WAIT_MS) {
			hbk_log(HBK_LOG_WARN, "iSCSI %s: the previous session of %s has not ended "
				"after %u ms; going on", c->peer, c->initiator_name, waited);
			return;
		}
		struct timespec ts = { 0, NEXUS_POLL_MS * 1000000L };
		nanosleep(&ts, NULL);
	}
}

static bool tsih_in_use(struct hbk_iscsi *s, uint16_t tsih)
{
	for (struct hbk_iscsi_conn *o = s->conns; o; o = o->next)
		if (o->registered && o->tsih == tsih)
			return true;
	return false;
}

int hbk_iscsi_session_register(struct hbk_iscsi *s, struct hbk_iscsi_conn *c)
{
	pthread_mutex_lock(&s->lock);
	struct hbk_iscsi_conn *old = NULL;
	for (struct hbk_iscsi_conn *o = s->conns; o; o = o->next)
		if (o != c && o->registered && o->session_type == c->session_type &&
		    !strcmp(o->initiator_name, c->initiator_name) &&
		    !memcmp(o->isid, c->isid, sizeof(o->isid)) &&
		    (c->session_type == HBK_ISCSI_SESSION_DISCOVERY || o->target == c->target))
			old = o;
	if (c->tsih && (!old || old->tsih != c->tsih)) {
		pthread_mutex_unlock(&s->lock);
		return -ENOENT;
	}
	if (old) {
		/* Session reinstatement (RFC 7143 6.3.5): the new login of the
		 * same initiator port ends the old session and its tasks. */
		hbk_log(HBK_LOG_INFO, "iSCSI: %s reinstates its session (ISID "
			"%02x%02x%02x%02x%02x%02x, TSIH %u)", c->initiator_name, c->isid[0],
			c->isid[1], c->isid[2], c->isid[3], c->isid[4], c->isid[5], old->tsih);
		old->registered = false;
		hbk_iscsi_conn_kill(old);
	}
	if (!c->tsih)
		do
			c->tsih = s->next_tsih++;
		while (!c->tsih || tsih_in_use(s, c->tsih));
	c->registered = true;
	c->nexus_held = c->session_type == HBK_ISCSI_SESSION_NORMAL;
	pthread_mutex_unlock(&s->lock);
	if (c->nexus_held)
		wait_nexus_lost(s, c);
	return 0;
}

void hbk_iscsi_buf_freed(struct hbk_iscsi *s)
{
	if (!atomic_load_explicit(&s->buf_waiters, memory_order_relaxed))
		return;
	pthread_mutex_lock(&s->lock);
	for (struct hbk_iscsi_conn *o = s->conns; o; o = o->next)
		if (atomic_load_explicit(&o->want_buf, memory_order_relaxed))
			hbk_iscsi_conn_wake(o);
	pthread_mutex_unlock(&s->lock);
}

/* ---- The listener ------------------------------------------------------------------------ */

/* Joins and frees the connections whose threads ended. */
static void reap(struct hbk_iscsi *s, bool all)
{
	struct hbk_iscsi_conn *dead = NULL;
	pthread_mutex_lock(&s->lock);
	for (struct hbk_iscsi_conn **pp = &s->conns; *pp;) {
		struct hbk_iscsi_conn *c = *pp;
		if (all || atomic_load(&c->exited)) {
			*pp = c->next;
			c->next = dead;
			dead = c;
			s->nconns--;
		} else {
			pp = &c->next;
		}
	}
	pthread_mutex_unlock(&s->lock);
	while (dead) {
		struct hbk_iscsi_conn *next = dead->next;
		hbk_iscsi_conn_reap(dead);
		dead = next;
	}
}

static void *listener(void *arg)
{
	hbk_thread_name("hbk-iscsi-lsn");
	struct hbk_iscsi *s = arg;
	for (;;) {
		struct pollfd p[2] = { { .fd = s->lfd, .events = POLLIN }, { .fd = s->efd, .events = POLLIN } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			hbk_log(HBK_LOG_ERR, "iSCSI listener: poll: %s", strerror(errno));
			break;
		}
		if (p[1].revents) {
			uint64_t v;
			if (read(s->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				hbk_log(HBK_LOG_WARN, "iSCSI listener: eventfd: %s", strerror(errno));
			reap(s, false);
		}
		if (atomic_load(&s->stopping))
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		for (;;) {
			int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd < 0) {
				if (errno == EINTR || errno == ECONNABORTED)
					continue;
				if (errno != EAGAIN && errno != EWOULDBLOCK)
					hbk_log(HBK_LOG_WARN, "iSCSI: accept: %s", strerror(errno));
				break;
			}
			reap(s, false);
			pthread_mutex_lock(&s->lock);
			bool full = s->nconns >= s->max_conns;
			pthread_mutex_unlock(&s->lock);
			if (full) {
				hbk_log(HBK_LOG_WARN, "iSCSI: connection refused: %u connections "
					"already (--max-connections)", s->max_conns);
				close(fd);
				continue;
			}
			int err = hbk_iscsi_conn_start(s, fd);
			if (err)
				hbk_log(HBK_LOG_WARN, "iSCSI: cannot start a connection: %s",
					strerror(-err));
		}
	}
	return NULL;
}

/* ---- Start and stop ------------------------------------------------------------------------- */

/* "ADDR:PORT" or "[ADDR]:PORT" into host and port strings. */
static int split_listen(const char *spec, char *host, size_t hsize, char *port, size_t psize)
{
	const char *colon;
	size_t hlen;
	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');
		if (!close || close[1] != ':')
			return -EINVAL;
		hlen = (size_t)(close - spec - 1);
		spec++;
		colon = close + 1;
	} else {
		colon = strrchr(spec, ':');
		if (!colon || strchr(spec, ':') != colon)
			return -EINVAL;
		hlen = (size_t)(colon - spec);
	}
	if (!hlen || hlen >= hsize || !colon[1] || strlen(colon + 1) >= psize)
		return -EINVAL;
	memcpy(host, spec, hlen);
	host[hlen] = 0;
	snprintf(port, psize, "%s", colon + 1);
	for (const char *p = port; *p; p++)
		if (*p < '0' || *p > '9')
			return -EINVAL;
	return atoi(port) > 65535 ? -EINVAL : 0;
}

static int open_listener(struct hbk_iscsi *s, const char *spec)
{
	char host[256], port[8];
	int err = split_listen(spec, host, sizeof(host), port, sizeof(port));
	if (err) {
		hbk_log(HBK_LOG_ERR, "iSCSI: bad listen address '%s' (want ADDR:PORT or "
			"[ADDR]:PORT)", spec);
		return err;
	}
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE }, *ai;
	int gai = getaddrinfo(host, port, &hints, &ai);
	if (gai) {
		hbk_log(HBK_LOG_ERR, "iSCSI: listen address '%s': %s", spec, gai_strerror(gai));
		return -EINVAL;
	}
	err = -EADDRNOTAVAIL;
	for (struct addrinfo *a = ai; a; a = a->ai_next) {
		int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			err = -errno;
			continue;
		}
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, a->ai_addr, a->ai_addrlen) || listen(fd, 128)) {
			err = -errno;
			close(fd);
			continue;
		}
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		char serv[8];
		if (getsockname(fd, (struct sockaddr *)&ss, &len) ||
		    getnameinfo((struct sockaddr *)&ss, len, s->addr, sizeof(s->addr), serv,
				sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV)) {
			err = -EADDRNOTAVAIL;
			close(fd);
			continue;
		}
		s->port = (uint16_t)atoi(serv);
		s->family = a->ai_family;
		s->lfd = fd;
		err = 0;
		break;
	}
	freeaddrinfo(ai);
	if (err)
		hbk_log(HBK_LOG_ERR, "iSCSI: cannot listen on %s: %s", spec, strerror(-err));
	return err;
}

static bool good_prefix(const char *p)
{
	size_t n = strlen(p);
	if (!n || n > 200)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = p[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' ||
		      ch == '-' || ch == ':'))
			return false;
	}
	return true;
}

static void free_server(struct hbk_iscsi *s)
{
	if (s->lfd >= 0)
		close(s->lfd);
	if (s->efd >= 0)
		close(s->efd);
	free(s->iqn_prefix);
	free(s->ports);
	free(s->creds.user);
	free(s->creds.secret);
	free(s->creds.mutual_user);
	free(s->creds.mutual_secret);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

int hbk_iscsi_start(const struct hbk_iscsi_opts *o, struct hbk_iscsi **out)
{
	const char *prefix = o->iqn_prefix ? o->iqn_prefix : HBK_ISCSI_IQN_PREFIX;
	if (!o->ctl || !good_prefix(prefix)) {
		hbk_log(HBK_LOG_ERR, "iSCSI: the IQN prefix must be 1..200 characters of "
			"a-z 0-9 . - :");
		return -EINVAL;
	}
	if (!o->chap_user != !o->chap_secret || !o->mutual_user != !o->mutual_secret ||
	    (o->mutual_user && !o->chap_user) || (o->chap_user && (!*o->chap_user || !*o->chap_secret)) ||
	    (o->mutual_user && (!*o->mutual_user || !*o->mutual_secret))) {
		hbk_log(HBK_LOG_ERR, "iSCSI: CHAP wants a user with a secret; mutual CHAP "
			"wants one-way CHAP too");
		return -EINVAL;
	}
	if (o->queue_depth > HBK_ISCSI_MAX_DEPTH) {
		hbk_log(HBK_LOG_ERR, "iSCSI: queue depth %u is over %u", o->queue_depth,
			HBK_ISCSI_MAX_DEPTH);
		return -EINVAL;
	}
	struct hbk_iscsi *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->lfd = s->efd = -1;
	pthread_mutex_init(&s->lock, NULL);
	s->ctl = o->ctl;
	s->max_conns = o->max_connections ? o->max_connections : HBK_ISCSI_MAX_CONNECTIONS;
	s->login_timeout_ms = o->login_timeout_ms ? o->login_timeout_ms : HBK_ISCSI_LOGIN_TIMEOUT_MS;
	s->depth = o->queue_depth ? o->queue_depth : HBK_ISCSI_QUEUE_DEPTH;
	s->next_tsih = 1;
	s->lim.max_recv_dsl = HBK_ISCSI_OUR_MAX_RECV_DSL;
	s->lim.max_burst = HBK_ISCSI_OUR_MAX_BURST;
	s->lim.first_burst = HBK_ISCSI_OUR_FIRST_BURST;
	s->lim.chap = o->chap_user != NULL;
	s->iqn_prefix = strdup(prefix);
	if (o->chap_user) {
		s->creds.user = strdup(o->chap_user);
		s->creds.secret = strdup(o->chap_secret);
		if (strlen(o->chap_secret) < 12)
			hbk_log(HBK_LOG_WARN, "iSCSI: the CHAP secret is shorter than the 12 "
				"bytes RFC 7143 asks for");
	}
	if (o->mutual_user) {
		s->creds.mutual_user = strdup(o->mutual_user);
		s->creds.mutual_secret = strdup(o->mutual_secret);
	}
	int err = -ENOMEM;
	if (!s->iqn_prefix || (o->chap_user && (!s->creds.user || !s->creds.secret)) ||
	    (o->mutual_user && (!s->creds.mutual_user || !s->creds.mutual_secret)))
		goto free_server;
	s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->efd < 0) {
		err = -errno;
		goto free_server;
	}
	char spec[300];
	snprintf(spec, sizeof(spec), "%s", o->listen ? o->listen : "127.0.0.1:3260");
	err = open_listener(s, spec);
	if (err)
		goto free_server;
	err = -pthread_create(&s->listener, NULL, listener, s);
	if (err)
		goto free_server;
	*out = s;
	return 0;

free_server:
	free_server(s);
	return err;
}

int hbk_iscsi_portal(const struct hbk_iscsi *t, char *addr, size_t size, uint16_t *port)
{
	if (strlen(t->addr) >= size)
		return -ENOSPC;
	memcpy(addr, t->addr, strlen(t->addr) + 1);
	*port = t->port;
	return 0;
}

void hbk_iscsi_stop(struct hbk_iscsi *s)
{
	uint64_t one = 1;
	atomic_store(&s->stopping, true);
	if (write(s->efd, &one, sizeof(one)) < 0)
		hbk_log(HBK_LOG_WARN, "iSCSI: eventfd: %s", strerror(errno));
	pthread_join(s->listener, NULL);
	close(s->lfd);
	s->lfd = -1;
	pthread_mutex_lock(&s->lock);
	for (struct hbk_iscsi_conn *c = s->conns; c; c = c->next)
		hbk_iscsi_conn_kill(c);
	pthread_mutex_unlock(&s->lock);
	/* Each connection ends its session: commands at the controller finish
	 * first, then the thread exits and is joined here. */
	reap(s, true);
	free_server(s);
}
