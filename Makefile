# Thin wrapper over CMake: `make`, `make test`, `make demo`.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: all deps build asan test test-unit test-asan demo format format-check \
        fuzz clean

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

format:
	clang-format -i src/*.[ch] tests/unit/*.c tests/fuzz/*.c

format-check:
	@clang-format --dry-run -Werror src/*.[ch] tests/unit/*.c tests/fuzz/*.c

fuzz:
	cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DHG_FUZZ=ON \
	    -DHG_SANITIZE=ON
	cmake --build build-fuzz -j $(JOBS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz
