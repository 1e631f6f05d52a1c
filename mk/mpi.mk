# q35-mpi: pipeline- and tensor-parallel inference over MPI (src/dist/mpi/,
# src/cli/mpi/; docs in src/dist/mpi/job.h and the README). Only these
# targets need MPI (Debian: libopenmpi-dev openmpi-bin); the library and
# the q35 program are the default build's:
#   make mpi             build-mpi/q35-mpi, linked as ./q35-mpi
#   make mpi-test        builds and runs build-mpi/tests/test_mpi (mpirun,
#                        2 and 3 ranks, --oversubscribe)
#   make SAN=1 mpi-test  the same under ASan+UBSan (build-mpi-san/)
MPICC     ?= mpicc
MPI_BUILD := $(if $(filter 1,$(SAN)),build-mpi-san,build-mpi)
MPI_SRC   := $(sort $(wildcard src/dist/mpi/*.c src/cli/mpi/*.c))
MPI_OBJ   := $(MPI_SRC:%.c=$(MPI_BUILD)/%.o)
# the commands (serve with the server) are q35's own objects; main and the
# engine are q35-mpi's
MPI_CLI_OBJ := $(filter-out $(BUILD)/src/cli/main.o $(BUILD)/src/cli/engine_local.o,$(CLI_OBJ))

.PHONY: mpi mpi-test
mpi: $(MPI_BUILD)/q35-mpi
	@if [ "$(SAN)" = 0 ]; then ln -sf $(MPI_BUILD)/q35-mpi q35-mpi; fi

$(MPI_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(MPICC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(MPI_BUILD)/q35-mpi: $(MPI_OBJ) $(MPI_CLI_OBJ) $(SRV_OBJ) $(BUILD)/libq35.a
	$(MPICC) -o $@ $^ $(LDLIBS) $(SRV_LIBS)

$(MPI_BUILD)/tests/test_mpi: tests/mpi/test_mpi.c $(wildcard tests/*.h) $(BUILD)/libq35.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(BUILD)/libq35.a $(LDLIBS)

# under SAN=1, LeakSanitizer leaves OpenMPI's own allocations out (tests/mpi/lsan.supp)
MPI_TEST_ENV := $(if $(filter 1,$(SAN)),LSAN_OPTIONS=suppressions=$(CURDIR)/tests/mpi/lsan.supp:print_suppressions=0:fast_unwind_on_malloc=0)
mpi-test: $(MPI_BUILD)/q35-mpi $(BUILD)/q35 $(MPI_BUILD)/tests/test_mpi
	@$(MPI_TEST_ENV) Q35_BIN=$(BUILD)/q35 Q35_MPI_BIN=$(MPI_BUILD)/q35-mpi sh tests/run.sh $(MPI_BUILD)/tests/test_mpi

-include $(MPI_OBJ:.o=.d)
