# Thin wrapper over CMake: `make`, `make test`, `make demo`.
BUILD      ?= build
ASAN_BUILD ?= build-asan
BENCH_BUILD ?= build-bench
BENCH_ARGS  ?=
LAB_ARGS    ?=
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: all deps build asan test test-unit test-asan demo lab format \
        format-check fuzz bench bench-hubsim clean

all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS)

$(ASAN_BUILD)/CMakeCache.txt:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DHG_SANITIZE=ON \
	    $(CMAKE_ARGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

asan: $(ASAN_BUILD)/CMakeCache.txt
	cmake --build $(ASAN_BUILD) -j $(JOBS)

# Every test: the formatting check, all suites in the normal build, then the
# unit and gateway end-to-end suites again under ASan + UBSan.
test: deps format-check build asan
	cd $(BUILD) && ctest -j $(JOBS) --output-on-failure
	cd $(ASAN_BUILD) && ctest -j $(JOBS) --output-on-failure -L 'unit|e2e' \
	    -LE slow

test-unit: build
	cd $(BUILD) && ctest -j $(JOBS) --output-on-failure -L unit

demo: deps build
	bash demo/demo.sh $(BUILD)/hubgate

# The whole topology in network namespaces (root): a rolling update of the
# gateways under load, then a move of the hub's private address.
# More: make lab LAB_ARGS="--gateways 4 --devices 500".
lab: deps build
	HG_BUILD_DIR=$(abspath $(BUILD)) exec python3 lab/lab.py $(LAB_ARGS)

# hubgate against HAProxy and NGINX (about ten minutes; never part of
# `make test`): a RelWithDebInfo build of its own, then bench/run.py writes
# docs/benchmarks.md. More rounds: make bench BENCH_ARGS="--rounds 5".
$(BENCH_BUILD)/CMakeCache.txt:
	cmake -S . -B $(BENCH_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    $(CMAKE_ARGS)

bench: deps $(BENCH_BUILD)/CMakeCache.txt
	cmake --build $(BENCH_BUILD) -j $(JOBS) --target hubgate hgload hgecho \
	    $(if $(shell pkg-config --exists liburing && echo y),hburing)
	python3 bench/run.py --build $(BENCH_BUILD) --docs docs/benchmarks.md \
	    $(BENCH_ARGS)

# What one hubsim process holds (memory per connected TLS device, 10,000
# devices) and the send rate it sustains, against Mosquitto (a few minutes;
# never part of `make test`): writes docs/hubsim-benchmarks.md.
bench-hubsim: deps $(BENCH_BUILD)/CMakeCache.txt
	cmake --build $(BENCH_BUILD) -j $(JOBS) --target hubsim
	python3 bench/hubsim_bench.py --build $(BENCH_BUILD) \
	    --docs docs/hubsim-benchmarks.md $(BENCH_ARGS)

FORMATTED = src/*.[ch] tests/unit/*.c tests/fuzz/*.c bench/*.[ch] \
            hubsim/*.[ch] hubsim/tests/*.c

format:
	clang-format -i $(FORMATTED)

format-check:
	@clang-format --dry-run -Werror $(FORMATTED)

fuzz:
	cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DHG_FUZZ=ON \
	    -DHG_SANITIZE=ON
	cmake --build build-fuzz -j $(JOBS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz $(BENCH_BUILD)
