//! Intentionally empty.
//!
//! The programs live in `src/main.rs` (the `turbo` binary, built for `bpfel-unknown-none`).
//! This library exists only so `turbo-daemon` can list `turbo-ebpf` as a build-dependency,
//! which makes cargo re-run the daemon's build script (and so rebuild the eBPF object) when
//! this crate changes.
#![no_std]
