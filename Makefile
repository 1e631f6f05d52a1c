# q35 — build with `make`; `make test` runs the suite; `make SAN=1 test`
# builds into build-san/ with AddressSanitizer + UBSan.

CC      ?= gcc
SAN     ?= 0
ifeq ($(SAN),1)
BUILD   ?= build-san
SANFLAGS = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
OPT      = -O1
else
BUILD   ?= build
SANFLAGS =
OPT      = -O2
endif

CFLAGS_BASE = -std=c11 -Wall -Wextra -Werror -g $(OPT) -fopenmp \
              -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc $(SANFLAGS)
CFLAGS  += $(CFLAGS_BASE) $(EXTRA_CFLAGS)
LDLIBS  += -fopenmp -lcjson -lpcre2-8 -lutf8proc -lm $(SANFLAGS)

LIB_SRC := $(sort $(wildcard src/core/*.c src/format/*.c src/arch/*.c src/io/*.c src/tokenizer/*.c src/text/*.c \
                             src/quant/*.c src/kernels/*.c src/model/*.c src/chat/*.c src/dist/*.c))
CLI_SRC := $(sort $(wildcard src/cli/*.c))
# the server (q35 serve) is part of the program, not of libq35
SRV_SRC := $(sort $(wildcard src/server/*.c))
SRV_LIBS = -lmicrohttpd -lpthread
TEST_SRC:= $(sort $(wildcard tests/test_*.c))
# the NEON kernels' test checks something only on AArch64: elsewhere
# `make neon-test` runs it under qemu
ifneq ($(shell uname -m),aarch64)
TEST_SRC:= $(filter-out tests/test_q35_neon.c,$(TEST_SRC))
endif

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
SRV_OBJ := $(SRV_SRC:%.c=$(BUILD)/%.o)
TESTS   := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

.PHONY: all test story clean
all: $(BUILD)/q35 q35

# rebuilt from scratch (a source file moved or removed leaves no stale
# member) and renamed into place (a link running meanwhile sees a whole one)
$(BUILD)/libq35.a: $(LIB_OBJ)
	@rm -f $@.tmp
	ar rcs $@.tmp $^
	@mv $@.tmp $@

$(BUILD)/q35: $(CLI_OBJ) $(SRV_OBJ) $(BUILD)/libq35.a
	$(CC) -o $@ $^ $(LDLIBS) $(SRV_LIBS)

# the program at the top of the tree is the normal build's
q35: $(BUILD)/q35
	@if [ "$(SAN)" = 0 ]; then ln -sf $(BUILD)/q35 q35; fi

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

# SIMD kernels get their instruction sets per function (target attributes),
# so the library itself runs on any x86-64 and picks at run time.

$(BUILD)/tests/%: tests/%.c $(wildcard tests/*.h) $(BUILD)/libq35.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libq35.a $(LDLIBS)

# the server's test also runs the q35 program it tests
$(BUILD)/tests/test_server: tests/test_server.c $(wildcard tests/*.h) $(SRV_OBJ) $(BUILD)/libq35.a $(BUILD)/q35
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(SRV_OBJ) $(BUILD)/libq35.a $(LDLIBS) $(SRV_LIBS)

test: $(BUILD)/q35 $(TESTS)
	@Q35_BIN=$(BUILD)/q35 sh tests/run.sh $(TESTS)

story: $(BUILD)/q35 q35
	@sh scripts/story.sh

clean:
	rm -rf build build-san q35 build-mpi build-mpi-san q35-mpi

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(SRV_OBJ:.o=.d)

# benchmark helpers (not part of the suite)
$(BUILD)/bench/%: bench/%.c $(wildcard bench/*.h) tests/tok_corpus.h $(BUILD)/libq35.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libq35.a $(LDLIBS)

# libFuzzer targets (clang): `make fuzz` builds build-fuzz/fuzz_*;
# `make fuzz-run FUZZ_SECONDS=60` runs each from its seed corpus.
FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=build-fuzz/%)
FUZZ_BASE  = -std=c11 -g -O1 -fopenmp -D_POSIX_C_SOURCE=200809L -Iinclude -Isrc \
             -fno-sanitize-recover=undefined
FUZZ_FLAGS = $(FUZZ_BASE) -fsanitize=fuzzer,address,undefined
# the library is instrumented once and shared by every target (compiling it
# per target took 6m45s of CI's 15 minutes)
FUZZ_OBJ  := $(LIB_SRC:%.c=build-fuzz/obj/%.o)
FUZZ_SECONDS ?= 60
.PHONY: fuzz fuzz-run
fuzz: $(FUZZ_BIN)
build-fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_BASE) -fsanitize=fuzzer-no-link,address,undefined -MMD -MP -c -o $@ $<
build-fuzz/fuzz_%: fuzz/fuzz_%.c $(FUZZ_OBJ)
	@mkdir -p build-fuzz
	clang $(FUZZ_FLAGS) -o $@ $< $(FUZZ_OBJ) -lcjson -lpcre2-8 -lutf8proc -lm
# the server's request parser is part of the program, not of the library
build-fuzz/fuzz_request: fuzz/fuzz_request.c $(FUZZ_OBJ) build-fuzz/obj/src/server/request.o build-fuzz/obj/src/server/text.o
	@mkdir -p build-fuzz
	clang $(FUZZ_FLAGS) -o $@ $< $(filter %.o,$(filter-out $(FUZZ_OBJ),$^)) $(FUZZ_OBJ) -lcjson -lpcre2-8 -lutf8proc -lm
-include $(FUZZ_OBJ:.o=.d) build-fuzz/obj/src/server/request.d build-fuzz/obj/src/server/text.d
fuzz-run: $(FUZZ_BIN)
	bash scripts/fuzz-run.sh $(FUZZ_SECONDS) $(FUZZ_BIN)

# optional pieces in their own files: proofs (mk/prove.mk), cross builds (mk/neon.mk)
-include $(wildcard mk/*.mk)
