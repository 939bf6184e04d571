# Thin wrapper over CMake for the README's commands.  The real build is
# CMakeLists.txt; every target first makes sure its Debian packages exist.
BUILD ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
JOBS ?= $(shell nproc)
FUZZ_SECONDS ?= 60
CTEST_ARGS ?=
# test-tsan: every ctest timeout, and the integration tests' own deadlines
# (lib.sh's SCALE), times this (TSan runs 5-15x slower); and the tests it
# leaves out, timing-bound on 2 cores at TSan's pace: netns/* (root only; run
# plain and under ASan), test_failover and test_pslinear_failover (kill and
# join cases racing a 1-5 s failure detector), test_portfuzz (a fuzzer
# that takes a core for itself), and the launcher tests test_slurm,
# test_mpi and test_k8s_mode (they check psrun, a single-threaded process,
# under real launchers and daemons; plain and ASan cover them).
TSAN_TIMEOUT_SCALE ?= 4
# test-asan: the same, for ASan+UBSan (2-3x slower than the plain build)
ASAN_TIMEOUT_SCALE ?= 2
# ... and the failure detector's timeout (tests that honour PS_HEARTBEAT_TIMEOUT_MS)
TSAN_HEARTBEAT_MS ?= 5000
TSAN_CTEST_ARGS ?= -E '^(netns/.*|integration/test_(failover|pslinear_failover|portfuzz|slurm|mpi|k8s_mode))$$'

.PHONY: all deps build test test-asan test-tsan fuzz demo install clean

all: build

build:
	@scripts/deps.sh build
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test:
	@scripts/deps.sh test
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@cd $(BUILD) && ctest --output-on-failure $(CTEST_ARGS)

test-asan:
	@scripts/deps.sh test
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DPS_SANITIZE=ON \
	  -DPS_TIMEOUT_SCALE=$(ASAN_TIMEOUT_SCALE) >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@cd $(ASAN_BUILD) && PS_TIMEOUT_SCALE=$(ASAN_TIMEOUT_SCALE) ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure $(CTEST_ARGS)

# ThreadSanitizer.  UCX's memory hooks (mmap/malloc interposition) crash
# under TSan, so they are turned off; tests/tsan.supp names the reports that
# are not races, each with its reason.
test-tsan:
	@scripts/deps.sh test
	@cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DPS_TSAN=ON \
	  -DPS_TIMEOUT_SCALE=$(TSAN_TIMEOUT_SCALE) >/dev/null
	@cmake --build $(TSAN_BUILD) -j $(JOBS)
	@cd $(TSAN_BUILD) && PS_HEARTBEAT_TIMEOUT_MS=$(TSAN_HEARTBEAT_MS) PS_TIMEOUT_SCALE=$(TSAN_TIMEOUT_SCALE) PS_UNDER_TSAN=1 \
	  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$(CURDIR)/tests/tsan.supp \
	  UCX_MEM_MMAP_HOOK_MODE=none UCX_MEM_MALLOC_HOOKS=no UCX_MEM_EVENTS=no \
	  ctest --output-on-failure $(TSAN_CTEST_ARGS) $(CTEST_ARGS)

fuzz:
	@scripts/deps.sh fuzz
	@CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DPS_FUZZ=ON -DPS_TESTS=OFF >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzzers
	@scripts/fuzz.sh $(FUZZ_BUILD)/bin $(FUZZ_SECONDS)

demo: build
	@scripts/deps.sh demo
	@scripts/demo.sh $(BUILD)/bin

install: build
	@cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD)
