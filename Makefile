# factory: build, test and run the Rust port of the robot-factory store.
#
#   make            release build; leaves ./server, ./client and ./load (as the
#                   original's make did) and the libfactory libraries
#   make test       every test: formatting, lints, Rust tests (plain
#                   `cargo test`), the fuzz crate type-checked, the C/C++
#                   programs (also under valgrind), the install through
#                   pkg-config, the systemd unit, the Python module; needs
#                   valgrind, pkg-config and systemd-analyze besides the
#                   compilers and python3 (.ci/run installs them), or
#                   FACTORY_SKIP naming what is missing (below)
#   make demo       a three-server cluster on free loopback ports, written to,
#                   scanned and compared, then stopped
#   make clean

CARGO ?= cargo
PREFIX ?= /usr/local
DESTDIR ?=
PYTHON ?= python3
RELEASE := target/release

# Loud skips. A target that needs an outside tool fails when the tool is
# missing, unless FACTORY_SKIP (comma-separated) names it; then it prints
# "skipped (FACTORY_SKIP)" and goes on. The names: valgrind, pkg-config,
# cc (the C and C++ compilers), git, systemd-analyze, python3.
#   make test FACTORY_SKIP=valgrind,systemd-analyze
# Exported so that the Rust tests apply the same rule.
FACTORY_SKIP ?=
export FACTORY_SKIP
# $(call need,COMMAND,NAME): shell code that goes on if COMMAND is on the
# PATH; otherwise ends the recipe, successfully only if NAME is in
# FACTORY_SKIP. Put the rest of the recipe on the same (continued) line.
define need
command -v $(firstword $(1)) >/dev/null 2>&1 || { \
  case ",$(FACTORY_SKIP)," in *",$(2),"*) \
    echo "$@: $(firstword $(1)) not found: skipped (FACTORY_SKIP)"; exit 0;; esac; \
  echo "$@: $(firstword $(1)) not found: install it, or run with FACTORY_SKIP=$(2) to skip this" >&2; \
  exit 1; }
endef

.PHONY: all build test rust-test lint demo clean

all: build

# libfactory.so's run-time name (its SONAME, libfactory.so.0: build.rs) is
# linked beside it, so that programs linked in the tree against
# target/release find it there.
build:
	$(CARGO) build --release --locked
	cp -f --remove-destination $(RELEASE)/server $(RELEASE)/client $(RELEASE)/load .
	ln -sf libfactory.so $(RELEASE)/$(SONAME)

test: lint rust-test fuzz-check c-test unit-check python-test readme-check

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# Plain `cargo test`: the test that links a C program against libfactory.so
# finds the one cargo builds for the tests.
rust-test:
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
#   make c-valgrind      runs every one of them again under valgrind
#   make install-check   install + pkg-config compile + uninstall in a temp dir
#   make install / uninstall   PREFIX=$(PREFIX) DESTDIR=$(DESTDIR)
#
# The libraries and the header come from `cargo build --release`:
# target/release/libfactory.{so,a} and include/factory.h (build.rs).

BINDIR := $(PREFIX)/bin
LIBDIR := $(PREFIX)/lib
INCLUDEDIR := $(PREFIX)/include
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
# libfactory.so.0.1.0 is installed with the links libfactory.so.0 (the
# SONAME, what programs load) and libfactory.so (what -lfactory finds).
SONAME := libfactory.so.$(firstword $(subst ., ,$(VERSION)))
REALNAME := libfactory.so.$(VERSION)
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
VALGRIND_FLAGS := -q --leak-check=full --error-exitcode=1
CPP_HEADERS := bindings/cpp/factory.hpp bindings/cpp/Messages.h \
	bindings/cpp/ClientStub.h bindings/cpp/ClientSocket.h

C_PROGRAMS := cluster test_api test_kv pipelined_disconnect
CXX_PROGRAMS := load embedded test_kv_cpp
# The programs that run on their own; load runs against a server
# (run-load.sh). pipelined_disconnect is also built and run by tests/limits.rs.
STANDALONE_PROGRAMS := cluster test_api test_kv pipelined_disconnect embedded test_kv_cpp
C_EXAMPLE_BINS := $(foreach p,$(C_PROGRAMS) $(CXX_PROGRAMS),$(CBUILD)/$(p)-shared $(CBUILD)/$(p)-static)
LIBFACTORY := $(RELEASE)/libfactory.so $(RELEASE)/libfactory.a
# What the example programs are built from and (shared) run against.
LIBFACTORY_DEPS := $(LIBFACTORY) include/factory.h $(RELEASE)/$(SONAME)

.PHONY: c-test header-check c-examples c-run c-valgrind install-check install uninstall

c-test: header-check c-run c-valgrind install-check

# The build rewrites the header only when it changes; a difference from
# the committed file means src/ffi changed without its header.
header-check: build
	@$(call need,git,git); \
	if ! git ls-files --error-unmatch include/factory.h >/dev/null 2>&1; then \
	  case ",$(FACTORY_SKIP)," in *",git,"*) \
	    echo "header-check: not a git work tree (or include/factory.h untracked): skipped (FACTORY_SKIP)"; exit 0;; esac; \
	  echo "header-check: not a git work tree, or include/factory.h is not tracked: run it in a clone, or with FACTORY_SKIP=git" >&2; \
	  exit 1; fi; \
	git diff --exit-code --stat -- include/factory.h || { \
	  echo "header-check: include/factory.h differs from the committed one: review and commit it" >&2; exit 1; }; \
	echo "header-check: include/factory.h is up to date"

# Made by `make build`; these rules only name them for the ones below.
$(LIBFACTORY) include/factory.h:
	$(CARGO) build --release --locked
$(RELEASE)/$(SONAME): $(RELEASE)/libfactory.so
	ln -sf libfactory.so $@

c-examples: $(C_EXAMPLE_BINS)

# Each program twice: name-shared (C99 or C++11, libfactory.so) and
# name-static (C99 or C++17, libfactory.a).
$(CBUILD)/cluster-%: examples/cluster.c $(LIBFACTORY_DEPS)
	@mkdir -p $(CBUILD)
	$(CC) $(C_FLAGS) examples/cluster.c -o $@ $(LINK_$*)
$(CBUILD)/test_api-%: tests/c/test_api.c $(LIBFACTORY_DEPS)
	@mkdir -p $(CBUILD)
	$(CC) $(C_FLAGS) -pthread tests/c/test_api.c -o $@ $(LINK_$*)
$(CBUILD)/test_kv-%: tests/c/test_kv.c $(LIBFACTORY_DEPS)
	@mkdir -p $(CBUILD)
	$(CC) $(C_FLAGS) tests/c/test_kv.c -o $@ $(LINK_$*)
$(CBUILD)/pipelined_disconnect-%: tests/hostile_c/pipelined_disconnect.c $(LIBFACTORY_DEPS)
	@mkdir -p $(CBUILD)
	$(CC) $(C_FLAGS) -pthread tests/hostile_c/pipelined_disconnect.c -o $@ $(LINK_$*)
$(CBUILD)/load-%: examples/load.cpp $(LIBFACTORY_DEPS) $(CPP_HEADERS)
	@mkdir -p $(CBUILD)
	$(CXX) $(CXX_STD_$*) $(CXX_FLAGS) examples/load.cpp -o $@ $(LINK_$*)
$(CBUILD)/embedded-%: examples/embedded.cpp $(LIBFACTORY_DEPS) $(CPP_HEADERS)
	@mkdir -p $(CBUILD)
	$(CXX) $(CXX_STD_$*) $(CXX_FLAGS) examples/embedded.cpp -o $@ $(LINK_$*)
$(CBUILD)/test_kv_cpp-%: tests/c/test_kv.cpp $(LIBFACTORY_DEPS) $(CPP_HEADERS)
	@mkdir -p $(CBUILD)
	$(CXX) $(CXX_STD_$*) $(CXX_FLAGS) tests/c/test_kv.cpp -o $@ $(LINK_$*)

# The compilers are checked first, so that a missing one is a loud skip (or
# a failure) instead of make's "command not found".
c-run: build
	@set -e; $(call need,$(CC),cc); $(call need,$(CXX),cc); \
	$(MAKE) --no-print-directory c-examples; \
	for link in shared static; do \
	  for p in $(STANDALONE_PROGRAMS); do echo "== $(CBUILD)/$$p-$$link"; $(CBUILD)/$$p-$$link; done; \
	  echo "== tests/c/run-load.sh $(CBUILD)/load-$$link"; \
	  sh tests/c/run-load.sh $(RELEASE)/server $(CBUILD)/load-$$link; \
	  echo "== tests/c/run-load-balancer.sh $(CBUILD)/load-$$link"; \
	  sh tests/c/run-load-balancer.sh $(RELEASE)/server $(RELEASE)/load $(CBUILD)/load-$$link; \
	done

# Every program of c-run, shared and static, under valgrind (memory errors
# and definite or possible leaks fail). The load example runs through
# run-load.sh as in c-run, by way of a two-line script that puts valgrind
# in front of it.
c-valgrind: build
	@set -e; $(call need,$(CC),cc); $(call need,$(CXX),cc); $(call need,$(VALGRIND),valgrind); \
	$(MAKE) --no-print-directory c-examples; \
	for link in shared static; do \
	  for p in $(STANDALONE_PROGRAMS); do \
	    echo "== valgrind $(CBUILD)/$$p-$$link"; \
	    $(VALGRIND) $(VALGRIND_FLAGS) $(CBUILD)/$$p-$$link; \
	  done; \
	  wrap=$(CBUILD)/valgrind-load-$$link; \
	  printf '#!/bin/sh\nexec %s %s %s "$$@"\n' "$(VALGRIND)" "$(VALGRIND_FLAGS)" "$(abspath $(CBUILD))/load-$$link" >$$wrap; \
	  chmod +x $$wrap; \
	  echo "== tests/c/run-load.sh under valgrind: $(CBUILD)/load-$$link"; \
	  sh tests/c/run-load.sh $(RELEASE)/server $$wrap; \
	done

# The installed library used as the README tells users to, in a temporary
# PREFIX: the files installed (exactly), the SONAME, pkg-config finding the
# .pc through PKG_CONFIG_PATH, a C and a C++ program compiled with
# `$$(pkg-config --cflags --libs libfactory)` and run, once with
# LD_LIBRARY_PATH set to the .pc's libdir and once linked with an rpath to
# it; the C++ drop-in headers through the .pc's dropindir. Then a DESTDIR
# staging (the .pc must name the final PREFIX), and uninstall, which must
# leave nothing, not even an empty directory.
INSTALLED_FILES := bin/client bin/load bin/server include/factory.h \
	$(addprefix include/factory/,$(notdir $(CPP_HEADERS))) \
	lib/libfactory.a lib/libfactory.so lib/$(SONAME) lib/$(REALNAME) lib/pkgconfig/libfactory.pc
install-check: build
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; prefix=$$tmp/usr; \
	$(MAKE) --no-print-directory install PREFIX=$$prefix DESTDIR= >/dev/null; \
	(cd $$prefix && find . ! -type d | sed 's|^\./||' | LC_ALL=C sort) >$$tmp/installed; \
	printf '%s\n' $(INSTALLED_FILES) | LC_ALL=C sort >$$tmp/expected; \
	diff -u $$tmp/expected $$tmp/installed || { echo "install-check: make install installed other files than these" >&2; exit 1; }; \
	[ "$$(readlink $$prefix/lib/libfactory.so)" = $(REALNAME) ] && [ "$$(readlink $$prefix/lib/$(SONAME))" = $(REALNAME) ] \
	  || { echo "install-check: libfactory.so and $(SONAME) must be links to $(REALNAME)" >&2; exit 1; }; \
	( $(call need,pkg-config,pkg-config); $(call need,$(CC),cc); $(call need,$(CXX),cc); $(call need,readelf,cc); \
	readelf -d $$prefix/lib/$(REALNAME) | grep -q 'SONAME.*\[$(SONAME)\]' \
	  || { echo "install-check: $(REALNAME) has no SONAME $(SONAME)" >&2; exit 1; }; \
	PKG_CONFIG_PATH=$$prefix/lib/pkgconfig; export PKG_CONFIG_PATH; \
	[ "$$(pkg-config --modversion libfactory)" = $(VERSION) ]; \
	libdir=$$(pkg-config --variable=libdir libfactory); [ "$$libdir" = $$prefix/lib ]; \
	echo "== cc app.c \$$(pkg-config --cflags --libs libfactory); LD_LIBRARY_PATH=\$$(pkg-config --variable=libdir libfactory) ./app"; \
	$(CC) -std=c99 $(C_WARN) tests/c/pkg_config_app.c -o $$tmp/app-c $$(pkg-config --cflags --libs libfactory); \
	readelf -d $$tmp/app-c | grep -q 'NEEDED.*\[$(SONAME)\]' \
	  || { echo "install-check: the program does not load libfactory by its SONAME" >&2; exit 1; }; \
	LD_LIBRARY_PATH=$$libdir $$tmp/app-c; \
	echo "== cc app.c \$$(pkg-config --cflags --libs libfactory) -Wl,-rpath,\$$(pkg-config --variable=libdir libfactory); ./app"; \
	$(CC) -std=c99 $(C_WARN) tests/c/pkg_config_app.c -o $$tmp/app-rpath $$(pkg-config --cflags --libs libfactory) -Wl,-rpath,$$libdir; \
	env -u LD_LIBRARY_PATH $$tmp/app-rpath; \
	echo "== c++ app.cpp \$$(pkg-config --cflags --libs libfactory)"; \
	$(CXX) -std=c++11 $(C_WARN) tests/c/pkg_config_app.cpp -o $$tmp/app-cxx $$(pkg-config --cflags --libs libfactory); \
	LD_LIBRARY_PATH=$$libdir $$tmp/app-cxx; \
	echo "== c++ load.cpp -I\$$(pkg-config --variable=dropindir libfactory)"; \
	$(CXX) -std=c++11 $(C_WARN) -pthread -I$$(pkg-config --variable=dropindir libfactory) examples/load.cpp \
	  -o $$tmp/load $$(pkg-config --cflags --libs libfactory) ); \
	( $(call need,$(PYTHON),python3); \
	  echo "== python3 bindings/python/factory.py with the installed libfactory.so.0 (LD_LIBRARY_PATH)"; \
	  mkdir $$tmp/py; cp bindings/python/factory.py $$tmp/py/; \
	  cd $$tmp/py && env -u FACTORY_LIB LD_LIBRARY_PATH=$$prefix/lib $(PYTHON) -c \
	    'import factory, sys; v = factory.version(); maps = open("/proc/self/maps").read(); \
	    sys.exit(0 if v == sys.argv[1] and sys.argv[2] in maps else "factory.py did not load " + sys.argv[2])' \
	    $(VERSION) $$prefix/lib/$(REALNAME) ); \
	$(MAKE) --no-print-directory install PREFIX=/opt/factory DESTDIR=$$tmp/stage >/dev/null; \
	grep -qx 'prefix=/opt/factory' $$tmp/stage/opt/factory/lib/pkgconfig/libfactory.pc \
	  || { echo "install-check: the staged .pc does not name PREFIX=/opt/factory" >&2; exit 1; }; \
	$(MAKE) --no-print-directory uninstall PREFIX=$$prefix DESTDIR= >/dev/null; \
	$(MAKE) --no-print-directory uninstall PREFIX=/opt/factory DESTDIR=$$tmp/stage >/dev/null; \
	left=$$(find $$tmp/usr $$tmp/stage/opt -mindepth 1 2>/dev/null || true); \
	[ -z "$$left" ] && [ ! -e $$tmp/usr ] || { echo "install-check: uninstall left behind:" $$tmp/usr $$left >&2; exit 1; }; \
	echo "install-check: install, SONAME, pkg-config compile and run, uninstall ok"

# DESTDIR stages an install for packaging: files go under DESTDIR, the .pc
# names PREFIX. Nothing runs ldconfig: after installing into a directory
# the dynamic linker searches (/usr/local/lib), run `ldconfig` as root.
install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR)/factory
	install -m 755 $(RELEASE)/server $(RELEASE)/client $(RELEASE)/load $(DESTDIR)$(BINDIR)/
	install -m 755 $(RELEASE)/libfactory.so $(DESTDIR)$(LIBDIR)/$(REALNAME)
	ln -sf $(REALNAME) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(REALNAME) $(DESTDIR)$(LIBDIR)/libfactory.so
	install -m 644 $(RELEASE)/libfactory.a $(DESTDIR)$(LIBDIR)/
	install -m 644 include/factory.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 $(CPP_HEADERS) $(DESTDIR)$(INCLUDEDIR)/factory/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' \
	  -e 's|@LIBS_PRIVATE@|$(FACTORY_NATIVE_LIBS)|' libfactory.pc.in \
	  > $(DESTDIR)$(LIBDIR)/pkgconfig/libfactory.pc

# Removes what install installed, then every directory install may have
# made that is now empty, PREFIX included (rmdir leaves a directory that
# holds anything else alone).
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/server $(DESTDIR)$(BINDIR)/client $(DESTDIR)$(BINDIR)/load
	rm -f $(DESTDIR)$(LIBDIR)/libfactory.so $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/$(REALNAME)
	rm -f $(DESTDIR)$(LIBDIR)/libfactory.a $(DESTDIR)$(LIBDIR)/pkgconfig/libfactory.pc
	rm -f $(DESTDIR)$(INCLUDEDIR)/factory.h
	rm -f $(addprefix $(DESTDIR)$(INCLUDEDIR)/factory/,$(notdir $(CPP_HEADERS)))
	@for d in $(INCLUDEDIR)/factory $(INCLUDEDIR) $(LIBDIR)/pkgconfig $(LIBDIR) $(BINDIR) $(PREFIX); do \
	  if [ -d "$(DESTDIR)$$d" ] && rmdir "$(DESTDIR)$$d" 2>/dev/null; then echo "rmdir $(DESTDIR)$$d"; fi; \
	done

# --- Python: bindings/python/factory.py (ctypes) ------------------------------
#
#   make python-test  tests/python (unittest) against target/release/libfactory.so;
#                     install-check also loads the module with the installed library

.PHONY: python-test readme-check

# The README's marked command blocks, run as written (scripts/readme_check.py
# substitutes free ports and temporary directories); needs cc and pkg-config.
readme-check: build
	@set -e; $(call need,$(PYTHON),python3); $(call need,$(CC),cc); $(call need,pkg-config,pkg-config); \
	$(PYTHON) scripts/readme_check.py README.md

python-test: build
	@set -e; $(call need,$(PYTHON),python3); \
	FACTORY_LIB=$(abspath $(RELEASE))/libfactory.so $(PYTHON) -m unittest discover -s tests/python -v

# --- contrib: the systemd unit ----------------------------------------------
#
#   make unit-check   systemd-analyze verify of contrib/factory-server@.service,
#                     its ExecStart pointed at the built server (verify checks
#                     that the program exists); any message fails, as verify
#                     exits 0 on unknown keys and bad values

UNITS := contrib/factory-server@.service
SYSTEMD_ANALYZE ?= systemd-analyze

.PHONY: unit-check

unit-check: build
	@set -e; $(call need,$(SYSTEMD_ANALYZE),systemd-analyze); \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	for unit in $(UNITS); do \
	  name=$$(basename $$unit); \
	  sed 's|/usr/local/bin/|$(abspath $(RELEASE))/|g' $$unit >$$tmp/$$name; \
	  case $$name in *@.service) check=$${name%@.service}@check.service;; *) check=$$name;; esac; \
	  echo "== systemd-analyze verify $$unit (as $$check)"; \
	  if ! $(SYSTEMD_ANALYZE) verify --man=no $$tmp/$$check >$$tmp/out 2>&1 || [ -s $$tmp/out ]; then \
	    cat $$tmp/out >&2; echo "unit-check: $$unit does not verify cleanly" >&2; exit 1; fi; \
	done; \
	echo "unit-check: $(UNITS) verified"

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
#   make kvbench      scripts/kvbench.py: protocol v2 beside redis-server
#                     (apt-get install redis-server), 1 and 3 servers, 16 B to
#                     64 KiB values, 8 and 128 connections, depth 1 and 32,
#                     interleaved, medians, and the v1 echo floor (~7 min);
#                     KVBENCH_ARGS="fsync --etcd" or "memory" for the other parts
#
# See the README's "Performance" section for how to read the figures on a
# small machine.

LOADBENCH_ARGS ?=
KVBENCH_ARGS ?=

.PHONY: bench loadbench kvbench

bench:
	$(CARGO) bench --locked --bench benches

loadbench:
	$(CARGO) build --release --locked --bin server --bin client --example echo_floor --example resp_load
	$(PYTHON) scripts/loadbench.py $(LOADBENCH_ARGS)

kvbench:
	$(CARGO) build --release --locked --bin server --bin client --example echo_floor
	$(PYTHON) scripts/kvbench.py $(KVBENCH_ARGS)

# --- fuzzing ---------------------------------------------------------------
#
#   make fuzz         every cargo-fuzz target in fuzz/ for FUZZ_SECONDS each
#                     (default 30); needs cargo-fuzz and a nightly toolchain
#                     (`cargo install cargo-fuzz`, `rustup toolchain install
#                     nightly`) and says so when they are missing
#   make fuzz-check   type-checks the fuzz crate with the stable toolchain
#
# `make test` runs fuzz-check (the property tests, tests/proptest_*.rs, run
# the same decoders and session logic on random input). See docs/hostile.md
# for the targets and how to reproduce a crash.
#
# fuzz-check needs no nightly and does not build libFuzzer (a C++ library
# that `cargo check` would compile only to throw away): libfuzzer-sys's
# build script takes CUSTOM_LIBFUZZER_PATH instead, an empty archive that
# nothing links, as a check does not link. --locked: fuzz/Cargo.lock must
# list the main crate's dependencies too; after adding one to Cargo.toml,
# run `cd fuzz && cargo check` once (it adds what is missing) and commit it.

FUZZ_SECONDS ?= 30
FUZZ_TARGETS := v1_frames tag entry native_frame native_stream client_session v1_replica durable_log kv_frame kv_session
FUZZ_CHECK_DIR := $(abspath target/fuzz-check)
# Targets that run a server in the process: its threads are still running
# when libFuzzer exits, and LeakSanitizer's exit-time check reports what
# they hold (see fuzz/fuzz_targets/kv_session.rs): libFuzzer's
# -detect_leaks=0 and ASAN_OPTIONS=detect_leaks=0 (the exit-time check).
FUZZ_NO_LEAK_CHECK := kv_session

.PHONY: fuzz fuzz-check

fuzz:
	@if ! $(CARGO) +nightly fuzz --version >/dev/null 2>&1; then \
	  echo "fuzz: needs cargo-fuzz on a nightly toolchain:" >&2; \
	  echo "  rustup toolchain install nightly && cargo install cargo-fuzz" >&2; exit 1; fi
	@set -e; for t in $(FUZZ_TARGETS); do \
	  case $$t in $(FUZZ_NO_LEAK_CHECK)) extra=-detect_leaks=0; asan=detect_leaks=0;; *) extra=; asan=$${ASAN_OPTIONS:-};; esac; \
	  echo "== cargo +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) $$extra"; \
	  ASAN_OPTIONS=$$asan $(CARGO) +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) $$extra; \
	done

fuzz-check:
	@mkdir -p $(FUZZ_CHECK_DIR) && { [ -e $(FUZZ_CHECK_DIR)/libnone.a ] || : >$(FUZZ_CHECK_DIR)/libnone.a; }
	cd fuzz && CARGO_TARGET_DIR=$(FUZZ_CHECK_DIR) CUSTOM_LIBFUZZER_PATH=$(FUZZ_CHECK_DIR)/libnone.a \
	  CUSTOM_LIBFUZZER_STD_CXX=none $(CARGO) check --locked --bins || { \
	  echo "fuzz-check failed; if cargo says fuzz/Cargo.lock needs updating (a dependency was added" >&2; \
	  echo "to Cargo.toml), run \`cd fuzz && cargo check\` once and commit fuzz/Cargo.lock" >&2; exit 1; }
