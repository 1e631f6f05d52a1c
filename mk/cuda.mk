# The CUDA backend (src/cuda/, docs in src/cuda/cuda_backend.h), built into
# build-cuda/ so the CPU build never needs nvcc:
#   make cuda         build-cuda/q35 and build-cuda/libq35.a (-DQ35_CUDA + src/cuda/*.cu)
#   make cuda-test    builds and runs build-cuda/tests/test_cuda (host checks
#                     everywhere; the GPU part skips, exit 0, without a device)
#   make cuda-bench   writes a synthetic llama2-7b Q3_5 (q35 synth) and
#                     runs build-cuda/bench/cuda_bench on it (needs a GPU)
# nvcc: $(NVCC) (from PATH, else /usr/local/cuda/bin/nvcc). CUDA_ARCH: SASS
# for sm_90 (H100/H200) plus compute_80 PTX that newer drivers JIT for others.
CUDA_BUILD  := build-cuda
NVCC        ?= $(or $(shell command -v nvcc 2>/dev/null),/usr/local/cuda/bin/nvcc)
CUDA_HOME   ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_LIBDIR ?= $(CUDA_HOME)/lib64
CUDA_ARCH   ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=compute_80
NVCCFLAGS   ?= -O3 -std=c++17 $(CUDA_ARCH) -Xcompiler -fopenmp,-Wall,-Wextra \
               -D_POSIX_C_SOURCE=200809L -DQ35_CUDA -Iinclude -Isrc
CUDART      ?= -lcudart_static
CUDA_LDLIBS  = $(LDLIBS) -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR) $(CUDART) -lstdc++ -ldl -lrt -lpthread

CU_SRC       := $(sort $(wildcard src/cuda/*.cu))
CUDA_LIB_OBJ := $(LIB_SRC:%.c=$(CUDA_BUILD)/%.o) $(CU_SRC:%.cu=$(CUDA_BUILD)/%.cu.o)
CUDA_CLI_OBJ := $(CLI_SRC:%.c=$(CUDA_BUILD)/%.o) $(SRV_SRC:%.c=$(CUDA_BUILD)/%.o)
CUDA_TESTS   := $(CUDA_BUILD)/tests/test_cuda
CUDA_BENCH   := $(CUDA_BUILD)/bench/cuda_bench
CUDA_BENCH_MODEL ?= /tmp/q35-llama2-7b-q35.gguf

.PHONY: cuda cuda-test cuda-test-build cuda-bench cuda-clean
cuda: $(CUDA_BUILD)/q35 $(CUDA_BUILD)/libq35.a

# everything that needs no GPU to build (what CI compiles)
cuda-test-build: cuda $(CUDA_TESTS) $(CUDA_BENCH)

$(CUDA_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DQ35_CUDA -MMD -MP -c -o $@ $<

$(CUDA_BUILD)/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c -o $@ $<

$(CUDA_BUILD)/libq35.a: $(CUDA_LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

$(CUDA_BUILD)/q35: $(CUDA_CLI_OBJ) $(CUDA_BUILD)/libq35.a
	$(CC) -o $@ $^ $(CUDA_LDLIBS) $(SRV_LIBS)

$(CUDA_BUILD)/tests/test_cuda: tests/cuda/test_cuda.c tests/harness.h $(CUDA_BUILD)/libq35.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DQ35_CUDA -Itests -o $@ $< $(CUDA_BUILD)/libq35.a $(CUDA_LDLIBS)

$(CUDA_BUILD)/bench/cuda_bench: bench/cuda_bench.cu $(CUDA_BUILD)/libq35.a
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c -o $@.o $<
	$(CC) -o $@ $@.o $(CUDA_BUILD)/libq35.a $(CUDA_LDLIBS) -lcublas

cuda-test: $(CUDA_BUILD)/q35 $(CUDA_TESTS)
	@$(CUDA_BUILD)/tests/test_cuda

cuda-bench: $(CUDA_BENCH) $(CUDA_BUILD)/q35
	@test -f $(CUDA_BENCH_MODEL) || $(CUDA_BUILD)/q35 synth --shape llama2-7b --type Q3_5 $(CUDA_BENCH_MODEL)
	@$(CUDA_BUILD)/bench/cuda_bench $(CUDA_BENCH_MODEL)

cuda-clean:
	rm -rf $(CUDA_BUILD)

-include $(CUDA_LIB_OBJ:.o=.d) $(CUDA_CLI_OBJ:.o=.d)
