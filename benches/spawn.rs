//! What starting one script process costs, at executor level (no HTTP): posix_spawn vs
//! fork+exec, by language, and as the server process grows.
//!
//! Each iteration is what a CGI request pays for its process: spawn (clean
//! environment, own process group, stdin /dev/null), read the answer to EOF, reap.

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::procs::{Ballast, MODES, Runner, programs};
use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};

/// Parent sizes for `spawn_parent_rss`, MiB of touched heap.
const BALLAST_MIB: [usize; 4] = [0, 64, 256, 1024];

/// How long does one script process take from spawn to reaped, per language (compiled
/// Rust, sh, perl, python3), and does posix_spawn or fork+exec start it faster from a
/// small parent?
fn spawn_program(c: &mut Criterion) {
    let progs = programs();
    for note in &progs.skipped {
        eprintln!("spawn_program: {note}");
    }
    let runner = Runner::new();
    let mut group = c.benchmark_group("spawn_program");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for prog in &progs.list {
        for (mode_name, mode) in MODES {
            group.bench_function(BenchmarkId::new(mode_name, prog.label), |b| {
                b.iter(|| black_box(runner.run_once(mode, &prog.path)))
            });
        }
    }
    group.finish();
}

/// Does the cost of starting a process grow with the size of the server that starts it?
/// fork copies the parent's page tables (so it should grow with resident memory);
/// posix_spawn (vfork-like, CLONE_VM) should not. Compiled hello from a parent holding
/// 0, 64, 256 and 1024 MiB of touched heap; the parameter is the ballast in MiB.
fn spawn_parent_rss(c: &mut Criterion) {
    let progs = programs();
    let hello = &progs.list[0];
    assert_eq!(hello.label, "rust", "the compiled hello comes first");
    let runner = Runner::new();
    let mut group = c.benchmark_group("spawn_parent_rss");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for mib in BALLAST_MIB {
        // Built lazily so a filtered-out size costs no memory.
        let mut ballast: Option<Ballast> = None;
        for (mode_name, mode) in MODES {
            group.bench_function(BenchmarkId::new(mode_name, mib), |b| {
                let held = ballast.get_or_insert_with(|| {
                    let held = Ballast::new(mib);
                    let rss = common::rss_mib().map_or("?".into(), |r| r.to_string());
                    eprintln!("spawn_parent_rss: holding {mib} MiB, bench RSS {rss} MiB");
                    held
                });
                black_box(held.mib());
                b.iter(|| black_box(runner.run_once(mode, &hello.path)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, spawn_program, spawn_parent_rss);
criterion_main!(benches);
