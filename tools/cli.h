/* SPDX-License-Identifier: MIT */
/*
 * Shared pieces of the hbakit command-line tool: the controller options every
 * subcommand takes (--driver, --driver-arg, --attach, --mode) and the entry
 * points of the subcommands.
 */
#ifndef HBK_TOOLS_CLI_H
#define HBK_TOOLS_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hbk/host.h"

#define CLI_MAX_DRIVER_ARGS 32

struct cli_ctl {
	const char *who;          /* "hbakit bench": what the messages start with */
	bool mode_both;           /* --mode takes per-task|bundled|both (bench), else auto|bundled|per-task */
	const char *driver;
	const char *attach;
	const char *driver_args[CLI_MAX_DRIVER_ARGS + 1];
	unsigned ndriver_args;
	enum hbk_ctl_mode mode;
	int32_t poll_us;          /* --poll-us: ring polling; 0 default, < 0 off */
};

/* Sets the defaults: the ram driver installed next to this executable;
 * who names the command in messages. */
void cli_ctl_init(struct cli_ctl *o, const char *argv0, const char *who);

/* Consumes a controller option at argv[*i] (advancing *i past its value).
 * Returns 1 if it was one, 0 if not, -1 on a bad value (message printed). */
int cli_ctl_option(struct cli_ctl *o, int argc, char **argv, int *i);

/* Splits the option at argv[*i], "--key=value" or "--key value", copying
 * "--key" into key (at most size - 1 characters) and returning the value,
 * or NULL when it has none; a separate value moves *i past it.  --help
 * takes no value. */
const char *cli_option_split(int argc, char **argv, int *i, char *key, size_t size);

/* Whether a is --help or -h: the usage on stdout, exit status 0. */
bool cli_is_help(const char *a);

/* Says what is wrong with argument a, which no option of the command took:
 * "WHO: unknown option 'a'" (or "unexpected argument", for a word that is
 * no option). */
void cli_bad_arg(const char *who, const char *a);

/* Says what is wrong with option key (value v, NULL when it had none):
 * unknown (cli_bad_arg), missing its value, or a bad value. */
void cli_bad_option(const char *who, const char *key, const char *v, bool known);

/* Opens the controller the options describe in the given mode. */
int cli_ctl_open(const struct cli_ctl *o, enum hbk_ctl_mode mode, struct hbk_ctl **c);


/* bytes -> "1.5 GiB" into buf. */
void cli_fmt_capacity(uint64_t bytes, char *buf, size_t size);

int cli_bench(int argc, char **argv);
int cli_info(int argc, char **argv);
int cli_raid(int argc, char **argv);
int cli_serve(int argc, char **argv);

#endif /* HBK_TOOLS_CLI_H */
