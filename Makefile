# factory: build, test and run the Rust port of the robot-factory store.
#
#   make            release build; leaves ./server, ./client and ./load (as the
#                   original's make did) and the libfactory libraries
#   make test       every test: formatting, lints, Rust tests, C/C++ examples
#   make demo       a three-server cluster on free loopback ports, written to,
#                   scanned and compared, then stopped
#   make clean

CARGO ?= cargo
PREFIX ?= /usr/local
DESTDIR ?=
PYTHON ?= python3
RELEASE := target/release

.PHONY: all build test rust-test lint demo clean

all: build

build:
	$(CARGO) build --release --locked
	cp $(RELEASE)/server $(RELEASE)/client $(RELEASE)/load .

test: lint rust-test c-test

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# The library is built first: a test links a C program against its .so.
rust-test:
	$(CARGO) build --locked
	$(CARGO) test --locked

demo: build
	$(PYTHON) scripts/demo.py ./server ./client

clean:
	$(CARGO) clean
	rm -f server client load

# --- libfactory: C and C++ (header, examples, install) -----------------------
#
#   make c-test          everything below that `make test` runs
#   make header-check    include/factory.h matches what the build generates
#   make c-examples      C and C++ examples and C tests, built twice: against
#                        libfactory.so and against libfactory.a (in target/c)
#   make c-run           runs them, the load example against target/release/server
#                        and through target/release/load in front of three servers
#   make c-valgrind      the C example and C tests under valgrind, if present
#   make install-check   install + pkg-config compile + uninstall in a temp dir
#   make install / uninstall   PREFIX=$(PREFIX) DESTDIR=$(DESTDIR)
#
# The libraries and the header come from `cargo build --release`:
# target/release/libfactory.{so,a} and include/factory.h (build.rs).

BINDIR := $(PREFIX)/bin
LIBDIR := $(PREFIX)/lib
INCLUDEDIR := $(PREFIX)/include
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
CBUILD := target/c
# From `cargo rustc --release --lib -- --print native-static-libs` (Linux).
FACTORY_NATIVE_LIBS := -lgcc_s -lutil -lrt -lpthread -lm -ldl
C_WARN := -Wall -Wextra -Werror -g
C_FLAGS := -std=c99 $(C_WARN) -Iinclude
CXX_FLAGS := $(C_WARN) -pthread -Iinclude -Ibindings/cpp
LINK_shared := -L$(RELEASE) -lfactory -Wl,-rpath,$(abspath $(RELEASE))
LINK_static := $(RELEASE)/libfactory.a $(FACTORY_NATIVE_LIBS)
CXX_STD_shared := -std=c++11
CXX_STD_static := -std=c++17
VALGRIND ?= valgrind
CPP_HEADERS := bindings/cpp/factory.hpp bindings/cpp/Messages.h \
	bindings/cpp/ClientStub.h bindings/cpp/ClientSocket.h

C_PROGRAMS := cluster test_api
CXX_PROGRAMS := load embedded
C_EXAMPLE_BINS := $(foreach p,$(C_PROGRAMS) $(CXX_PROGRAMS),$(CBUILD)/$(p)-shared $(CBUILD)/$(p)-static)
LIBFACTORY := $(RELEASE)/libfactory.so $(RELEASE)/libfactory.a

.PHONY: c-test header-check c-examples c-run c-valgrind install-check install uninstall

c-test: header-check c-run c-valgrind install-check

# The build rewrites the header only when it changes; a difference from
# the committed file means src/ffi changed without its header.
header-check: build
	@if git ls-files --error-unmatch include/factory.h >/dev/null 2>&1; then \
	  git diff --exit-code --stat -- include/factory.h || { \
	    echo "header-check: include/factory.h differs from the committed one: review and commit it" >&2; exit 1; }; \
	  echo "header-check: include/factory.h is up to date"; \
	else echo "header-check: include/factory.h is not tracked by git; skipped"; fi

# Made by `make build`; this rule only names them for the ones below.
$(LIBFACTORY) include/factory.h:
	$(CARGO) build --release --locked

c-examples: $(C_EXAMPLE_BINS)

# Each program twice: name-shared (C99 or C++11, libfactory.so) and
# name-static (C99 or C++17, libfactory.a).
$(CBUILD)/cluster-%: examples/cluster.c $(LIBFACTORY) include/factory.h
	@mkdir -p $(CBUILD)
	$(CC) $(C_FLAGS) examples/cluster.c -o $@ $(LINK_$*)
$(CBUILD)/test_api-%: tests/c/test_api.c $(LIBFACTORY) include/factory.h
	@mkdir -p $(CBUILD)
	$(CC) $(C_FLAGS) -pthread tests/c/test_api.c -o $@ $(LINK_$*)
$(CBUILD)/load-%: examples/load.cpp $(LIBFACTORY) include/factory.h $(CPP_HEADERS)
	@mkdir -p $(CBUILD)
	$(CXX) $(CXX_STD_$*) $(CXX_FLAGS) examples/load.cpp -o $@ $(LINK_$*)
$(CBUILD)/embedded-%: examples/embedded.cpp $(LIBFACTORY) include/factory.h $(CPP_HEADERS)
	@mkdir -p $(CBUILD)
	$(CXX) $(CXX_STD_$*) $(CXX_FLAGS) examples/embedded.cpp -o $@ $(LINK_$*)

c-run: build c-examples
	@set -e; for link in shared static; do \
	  for p in cluster test_api embedded; do echo "== $(CBUILD)/$$p-$$link"; $(CBUILD)/$$p-$$link; done; \
	  echo "== tests/c/run-load.sh $(CBUILD)/load-$$link"; \
	  sh tests/c/run-load.sh $(RELEASE)/server $(CBUILD)/load-$$link; \
	  echo "== tests/c/run-load-balancer.sh $(CBUILD)/load-$$link"; \
	  sh tests/c/run-load-balancer.sh $(RELEASE)/server $(RELEASE)/load $(CBUILD)/load-$$link; \
	done

c-valgrind: c-examples
	@if command -v $(VALGRIND) >/dev/null 2>&1; then \
	  for p in cluster test_api; do \
	    echo "== valgrind $(CBUILD)/$$p-shared"; \
	    $(VALGRIND) -q --leak-check=full --error-exitcode=1 $(CBUILD)/$$p-shared || exit 1; \
	  done; \
	else echo "c-valgrind: $(VALGRIND) not found; skipped"; fi

# Installs into a temporary PREFIX (and a DESTDIR staging), compiles a C and
# a C++ program through pkg-config, runs them, and uninstalls again.
install-check: build
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(MAKE) --no-print-directory install PREFIX=$$tmp/usr DESTDIR= >/dev/null; \
	$(MAKE) --no-print-directory install PREFIX=/opt/factory DESTDIR=$$tmp/stage >/dev/null; \
	grep -qx 'prefix=/opt/factory' $$tmp/stage/opt/factory/lib/pkgconfig/libfactory.pc; \
	if command -v pkg-config >/dev/null 2>&1; then \
	  PKG_CONFIG_PATH=$$tmp/usr/lib/pkgconfig; export PKG_CONFIG_PATH; \
	  echo "== cc app.c \$$(pkg-config --cflags --libs libfactory)"; \
	  $(CC) -std=c99 $(C_WARN) tests/c/pkg_config_app.c -o $$tmp/app-c $$(pkg-config --cflags --libs libfactory); \
	  LD_LIBRARY_PATH=$$tmp/usr/lib $$tmp/app-c; \
	  echo "== c++ app.cpp \$$(pkg-config --cflags --libs libfactory)"; \
	  $(CXX) -std=c++11 $(C_WARN) tests/c/pkg_config_app.cpp -o $$tmp/app-cxx $$(pkg-config --cflags --libs libfactory); \
	  LD_LIBRARY_PATH=$$tmp/usr/lib $$tmp/app-cxx; \
	  echo "== c++ load.cpp -I\$$(pkg-config --variable=dropindir libfactory)"; \
	  $(CXX) -std=c++11 $(C_WARN) -pthread -I$$(pkg-config --variable=dropindir libfactory) examples/load.cpp \
	    -o $$tmp/load $$(pkg-config --cflags --libs libfactory); \
	else echo "install-check: pkg-config not found; compiling through pkg-config skipped"; fi; \
	$(MAKE) --no-print-directory uninstall PREFIX=$$tmp/usr DESTDIR= >/dev/null; \
	$(MAKE) --no-print-directory uninstall PREFIX=/opt/factory DESTDIR=$$tmp/stage >/dev/null; \
	left=$$(find $$tmp/usr $$tmp/stage -type f); \
	if [ -n "$$left" ]; then echo "install-check: uninstall left $$left" >&2; exit 1; fi; \
	echo "install-check: install, pkg-config and uninstall ok"

install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR)/factory
	install -m 755 $(RELEASE)/server $(RELEASE)/client $(RELEASE)/load $(DESTDIR)$(BINDIR)/
	install -m 755 $(RELEASE)/libfactory.so $(DESTDIR)$(LIBDIR)/
	install -m 644 $(RELEASE)/libfactory.a $(DESTDIR)$(LIBDIR)/
	install -m 644 include/factory.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 $(CPP_HEADERS) $(DESTDIR)$(INCLUDEDIR)/factory/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' \
	  -e 's|@LIBS_PRIVATE@|$(FACTORY_NATIVE_LIBS)|' libfactory.pc.in \
	  > $(DESTDIR)$(LIBDIR)/pkgconfig/libfactory.pc

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/server $(DESTDIR)$(BINDIR)/client $(DESTDIR)$(BINDIR)/load
	rm -f $(DESTDIR)$(LIBDIR)/libfactory.so $(DESTDIR)$(LIBDIR)/libfactory.a
	rm -f $(DESTDIR)$(LIBDIR)/pkgconfig/libfactory.pc $(DESTDIR)$(INCLUDEDIR)/factory.h
	rm -f $(addprefix $(DESTDIR)$(INCLUDEDIR)/factory/,$(notdir $(CPP_HEADERS)))
	-rmdir $(DESTDIR)$(INCLUDEDIR)/factory 2>/dev/null

# --- benchmarks ------------------------------------------------------------
#
#   make bench        criterion suites (benches/benches.rs): frame encode and
#                     decode, write and read round trips through in-process
#                     clusters of 1-3 servers, 8 concurrent writers; ~1 min
#   make loadbench    scripts/loadbench.py: release servers in clusters of 1,
#                     2 and 3 driven by the release client, beside the echo
#                     floor (benches/echo_floor.rs), 3 interleaved reps, medians;
#                     LOADBENCH_ARGS="--pin --reps 5 --data-dir" for more;
#                     "--original DIR --redis" adds the C++ original and
#                     redis-server (SET + WAIT) under the same load
#
# See the README's "Performance" section for how to read the figures on a
# small machine.

LOADBENCH_ARGS ?=

.PHONY: bench loadbench

bench:
	$(CARGO) bench --locked --bench benches

loadbench:
	$(CARGO) build --release --locked --bin server --bin client --example echo_floor --example resp_load
	$(PYTHON) scripts/loadbench.py $(LOADBENCH_ARGS)

# --- fuzzing ---------------------------------------------------------------
#
#   make fuzz         every cargo-fuzz target in fuzz/ for FUZZ_SECONDS each
#                     (default 30); needs cargo-fuzz and a nightly toolchain
#                     (`cargo install cargo-fuzz`, `rustup toolchain install
#                     nightly`) and says so when they are missing
#   make fuzz-check   type-checks the fuzz crate with the stable toolchain
#
# Neither is part of `make test`, whose property tests (tests/proptest_*.rs)
# run the same decoders and session logic on random input. See
# docs/hostile.md for the targets and how to reproduce a crash.

FUZZ_SECONDS ?= 30
FUZZ_TARGETS := v1_frames tag entry native_frame native_stream client_session v1_replica durable_log

.PHONY: fuzz fuzz-check

fuzz:
	@if ! $(CARGO) +nightly fuzz --version >/dev/null 2>&1; then \
	  echo "fuzz: needs cargo-fuzz on a nightly toolchain:" >&2; \
	  echo "  rustup toolchain install nightly && cargo install cargo-fuzz" >&2; exit 1; fi
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "== cargo +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS)"; \
	  $(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS); \
	done

fuzz-check:
	cd fuzz && $(CARGO) check --bins
