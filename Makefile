# factory: build, test and run the Rust port of the robot-factory store.
#
#   make            release build; leaves ./server and ./client (as the
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
	cp $(RELEASE)/server $(RELEASE)/client .

test: lint rust-test

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

rust-test:
	$(CARGO) test --locked

demo: build
	$(PYTHON) scripts/demo.py ./server ./client

clean:
	$(CARGO) clean
	rm -f server client

# --- libfactory: C and C++ (header, examples, install) -----------------------
