/* SPDX-License-Identifier: MIT */
/*
 * The one logging function of hbakit, used by the host library and the driver
 * runtime alike.  Each line goes out in a single write(2) so lines from
 * several threads and from the host and driver processes never interleave.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/common.h"

static const char *const level_name[] = { "error", "warning", "info", "debug" };
static char who[24] = "host";
static int threshold = -1;
static pthread_once_t threshold_once = PTHREAD_ONCE_INIT;

static void threshold_init(void)
{
	const char *env = getenv("HBK_LOG");
	threshold = HBK_LOG_WARN;
	if (!env)
		return;
	for (int i = 0; i < (int)HBK_ARRAY_SIZE(level_name); i++)
		if (!strcasecmp(env, level_name[i]) || (env[0] && !strncasecmp(env, level_name[i], 3)))
			threshold = i;
}

bool hbk_log_enabled(enum hbk_log_level level)
{
	pthread_once(&threshold_once, threshold_init);
	return (int)level <= threshold;
}

void hbk_log_set_who(const char *name)
{
	snprintf(who, sizeof(who), "%s", name);
}

void hbk_log(enum hbk_log_level level, const char *fmt, ...)
{
	if (!hbk_log_enabled(level))
		return;
	char line[1024];
	int n = snprintf(line, sizeof(line), "hbakit[%s] %s: ", who, level_name[level]);
	va_list ap;
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	int saved = errno;
	ssize_t w = write(STDERR_FILENO, line, (size_t)n);
	(void)w;
	errno = saved;
}

const char *hbk_strerror(int err)
{
	static __thread char buf[64];
	if (err < 0)
		err = -err;
	return strerror_r(err, buf, sizeof(buf));
}
