# AArch64 NEON kernels, cross-compiled and run under qemu-aarch64:
# `make neon-test` (needs gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and
# qemu-user; scripts/neon-test.sh says so if they are missing).
.PHONY: neon-test
neon-test:
	@sh scripts/neon-test.sh
