#!/bin/sh
# Swarm benchmarks, Rust next to Node hyperswarm 4.17.2 on one local network (see
# tests/tests/swarm_bench.rs). The Rust peers run in the test binary built with --release; the
# hub of the memory measurement is the release `hdht` binary.
set -eu
cd "$(dirname "$0")/.."
cargo build --release -p hdht-cli
HDHT_BIN="$PWD/target/release/hdht" \
  cargo test --release -p hdht-tests --test swarm_bench -- --ignored --nocapture
