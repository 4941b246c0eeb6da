# SPDX-License-Identifier: MIT
#
# hbakit build.  `make` builds libhbk (static and shared), the hbakit CLI, the
# drivers, the misbehaving test drivers and the tests; `make check` runs the
# whole suite and ends with one line "N passed, N failed, N skipped".
# SANITIZE=address,undefined or SANITIZE=thread builds into its own directory
# so sanitized and plain objects never mix.

CC      ?= cc
SANITIZE ?=
WERROR  ?= $(if $(CI),-Werror,)
OPT     ?= -O2

ifeq ($(SANITIZE),)
BUILD   ?= build
else
BUILD   ?= build/san-$(subst $(comma),-,$(SANITIZE))
endif
comma := ,

WARN    := -Wall -Wextra -Wshadow -Wvla -Wstrict-prototypes -Wmissing-prototypes \
           -Wformat=2 -Wno-format-nonliteral $(WERROR)
CFLAGS  ?= $(OPT) -g
ALL_CFLAGS := -std=c17 -D_GNU_SOURCE $(WARN) $(CFLAGS) -fPIC -pthread \
              -I. -Iinclude -Isrc -MMD -MP
LDLIBS  := -pthread -luring -lisal -lnbd -lnettle -lm
ifneq ($(SANITIZE),)
ALL_CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS    += -fsanitize=$(SANITIZE)
endif

LIB_SRC   := $(wildcard src/common/*.c src/host/*.c src/driver/*.c src/scsi/*.c \
                       src/disk/*.c src/raid/*.c src/device/*.c src/iscsi/*.c)
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
TOOL_SRC  := $(wildcard tools/*.c)
TOOL_OBJ  := $(TOOL_SRC:%.c=$(BUILD)/%.o)
DRV_DIRS  := $(patsubst %/,%,$(dir $(wildcard drivers/*/*.c)))
DRV_BINS  := $(sort $(foreach d,$(DRV_DIRS),$(BUILD)/drivers/hbk-$(notdir $(d))))
TDRV_SRC  := $(wildcard tests/drivers/*.c)
TDRV_LIB  := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tests/drivers/lib/*.c))
TDRV_BINS := $(TDRV_SRC:tests/drivers/%.c=$(BUILD)/tests/drivers/%)
TEST_SRC  := $(wildcard tests/test_*.c)
TEST_BINS := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

all: $(BUILD)/libhbk.a $(BUILD)/libhbk.so $(BUILD)/hbakit $(DRV_BINS) $(TDRV_BINS) $(TEST_BINS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/libhbk.a: $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/libhbk.so: $(LIB_OBJ)
	$(CC) -shared $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/hbakit: $(TOOL_OBJ) $(BUILD)/libhbk.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lm

.SECONDEXPANSION:
$(BUILD)/drivers/hbk-%: $$(addprefix $(BUILD)/,$$(addsuffix .o,$$(basename $$(wildcard drivers/$$*/*.c)))) $(BUILD)/libhbk.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/drivers/%: $(BUILD)/tests/drivers/%.o $(TDRV_LIB) $(BUILD)/libhbk.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The nbdkit front end (docs/nbdkit.md): libhbk linked in statically with its
# symbols kept private, so the plugin exports only nbdkit's entry point.
PLUGIN    := $(BUILD)/nbdkit-hbakit-plugin.so
all: $(PLUGIN)
$(PLUGIN): $(BUILD)/nbdkit/hbakit-plugin.o $(BUILD)/libhbk.a
	$(CC) -shared $(LDFLAGS) -Wl,--exclude-libs,ALL -o $@ $^ $(LDLIBS)

# tests/test_nbdkit_flush_death.sh's NBD client (libnbd): rounds of writes
# on several connections with flushes, and the check of what survived.
NBD_ROUNDS := $(BUILD)/tests/nbd/nbd-rounds
all: $(NBD_ROUNDS)
$(NBD_ROUNDS): $(BUILD)/tests/nbd/nbd_rounds.o
	$(CC) $(LDFLAGS) -o $@ $^ -lnbd

# bench/fio-seed.sh's yardstick: a memory disk served by a hand-off to one
# service thread, the least any plugin that completes I/O on another thread
# pays per request.
HANDOFF   := $(BUILD)/nbdkit-handoff-plugin.so
all: $(HANDOFF)
$(HANDOFF): $(BUILD)/bench/nbdkit-handoff-plugin.o
	$(CC) -shared $(LDFLAGS) -o $@ $^ -pthread

# bench/raid0-vs-fio.sh's probe of the disk under the files: does it answer a
# batch of reads one by one or as a whole.
PROBE     := $(BUILD)/disk-batch-probe
all: $(PROBE)
$(PROBE): $(BUILD)/bench/disk-batch-probe.o
	$(CC) $(LDFLAGS) -o $@ $^ -luring

TEST_LIB  := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tests/lib/*.c))
$(BUILD)/tests/test_%: $(BUILD)/tests/test_%.o $(TEST_LIB) $(BUILD)/libhbk.a
	$(CC) $(LDFLAGS) $(TEST_WRAP) -o $@ $^ $(LDLIBS) -lcmocka

# test_device_sched forces schedules at the card's internal calls: the
# symbols it wraps (the test defines __wrap_SYMBOL, calls __real_SYMBOL).
$(BUILD)/tests/test_device_sched: TEST_WRAP := -Wl,--wrap=hbk_dev_read32 \
	-Wl,--wrap=dev_post_reply
# test_raid fails chosen writes the cache sends to the RAID engine.
$(BUILD)/tests/test_raid: TEST_WRAP := -Wl,--wrap=raid_engine_submit

# The main job: the story's experiment on its controller, the emulated RAID
# card (drivers/raid) with an LSI 3108-class RAID 5 of four HDD-model memory
# disks and 1 GiB of cache: the seed's workloads, per-task path against
# bundled path, one table (about 2 minutes).  The story's runs were served
# from cache (their 4 KiB random figures are far beyond four disks), so the
# I/O covers 512 MiB that a warm-up read has brought into the card's cache.
#
# run, check and test install the Debian packages first (deps) and only then
# build, in a make of their own: as prerequisites side by side, `make -j`
# would start compiling before apt-get had put the headers in place.
run: deps
	$(MAKE) --no-print-directory all
	$(BUILD)/hbakit bench --suite seed --driver $(BUILD)/drivers/hbk-raid \
	    --driver-arg array=r5:profile=lsi3108-raid5 --runtime 5 --span 512M --warmup

# `make check`: the whole suite in every variant (plain, ASan+UBSan, TSan)
# plus a clang -Werror build and `make lint`, with one closing line for all of it.
# `make check SANITIZE=...` runs one sanitizer variant; `make test` the plain one.
# The builds use every core (JOBS); the tests run one build at a time.
JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
ifeq ($(SANITIZE),)
check: deps
	$(MAKE) --no-print-directory -j$(JOBS) all
	$(MAKE) --no-print-directory -j$(JOBS) SANITIZE=address,undefined all
	$(MAKE) --no-print-directory -j$(JOBS) SANITIZE=thread all
	$(MAKE) --no-print-directory -j$(JOBS) CC=clang BUILD=build/clang WERROR=-Werror all
	$(MAKE) --no-print-directory lint
	@if $(FUZZ_PROBE); then $(MAKE) --no-print-directory -j$(JOBS) fuzz-build; \
	else echo "clang has no libFuzzer runtime: the fuzz harnesses are not built"; fi
	tests/run.sh build build/san-address-undefined build/san-thread
else
check: deps
	$(MAKE) --no-print-directory all
	tests/run.sh $(BUILD)
endif

test: deps
	$(MAKE) --no-print-directory all
	tests/run.sh $(BUILD)

# Coverage-guided fuzzing (docs/fuzzing.md): every parser that
# takes bytes from outside the process has a libFuzzer harness in
# tests/fuzz/.  The library is built again with clang, ASan, UBSan and
# libFuzzer's coverage hooks into build/fuzz; `make fuzz` runs each harness
# for FUZZ_SECONDS on a copy of its seed corpus (tests/fuzz/corpus/TARGET),
# one at a time, and fails naming the reproducer of any crash;
# `make fuzz-build` only builds them (tests/test_fuzz_corpus.sh replays the
# checked-in corpus with them in `make check`).
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_BUILD   := build/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
                -fno-omit-frame-pointer
FUZZ_CFLAGS  := -std=c17 -D_GNU_SOURCE $(WARN) -O1 -g -pthread -I. -Iinclude -Isrc \
                -MMD -MP $(FUZZ_SAN) -fsanitize=fuzzer-no-link
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS    := $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ_BUILD)/%)
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_BUILD)/%.o)
# Whether FUZZ_CC links a fuzzer (clang's libFuzzer runtime is installed).
FUZZ_PROBE   := printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n)\
                { (void)d; return (int)(n - n); }\n' | \
                $(FUZZ_CC) -fsanitize=fuzzer -x c -o /dev/null - >/dev/null 2>&1

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

$(FUZZ_BUILD)/libhbk.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/tests/fuzz/fuzz_%.o $(FUZZ_BUILD)/libhbk.a
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

fuzz-build: $(FUZZ_BINS)

# fuzz_iscsi_conn serves this build's ram driver (`make fuzz
# SANITIZE=address,undefined`: one under ASan and UBSan).
fuzz: fuzz-build $(BUILD)/drivers/hbk-ram
	HBK_FUZZ_DRIVER=$(BUILD)/drivers/hbk-ram tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# DEPS=true skips the package check, for a build whose packages are managed
# otherwise.
DEPS    ?= tools/deps.sh
deps:
	@$(DEPS)

# `make lint`: cppcheck over the sources (about 5 s), clean apart from the
# false positives tools/cppcheck.supp lists with their reasons; the full
# `make check` runs it before the tests.  Needs the cppcheck package
# (Debian 12: 2.10), which tools/deps.sh installs.
LINT_DIRS := src drivers nbdkit tools bench
lint:
	@command -v cppcheck >/dev/null || { echo "lint: cppcheck is not installed" >&2; exit 1; }
	cppcheck -q -j$(JOBS) --error-exitcode=1 --enable=warning,portability --inconclusive \
	    --std=c11 -D_GNU_SOURCE -Iinclude -Isrc -I. --suppress=missingIncludeSystem \
	    --suppressions-list=tools/cppcheck.supp $(LINT_DIRS)

clean:
	rm -rf build

.PHONY: all run check test deps clean lint fuzz fuzz-build
.SECONDARY:
-include $(shell find $(BUILD) $(FUZZ_BUILD) -name '*.d' 2>/dev/null | sort -u)
