//! CGI (a process per request) vs FastCGI (persistent workers) end to end: the
//! library's server in-process on loopback, N keep-alive clients in a closed loop.

mod common;

use std::time::Duration;

use common::client::Clients;
use common::ladder::{Site, ladder};
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};

/// Concurrent keep-alive clients.
const CLIENTS: [usize; 3] = [1, 8, 32];
/// FastCGI workers per script (the pool's minimum and maximum): two per core here.
const WORKERS: usize = 4;

/// How many requests per second does the same program serve through `/cgi-bin/` (a new
/// process per request) and `/fcgi-bin/` (a warm worker pool), per language, at 1, 8
/// and 32 concurrent keep-alive clients? One iteration = one request from each client,
/// so criterion's throughput is requests per second.
fn models(c: &mut Criterion) {
    let (rungs, notes) = ladder();
    for note in &notes {
        eprintln!("models: {note}");
    }
    let mut group = c.benchmark_group("models");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for rung in &rungs {
        // Started by the first benchmark of the rung that the filter lets run.
        let mut site: Option<Site> = None;
        for &model in &rung.models {
            let mut warmed = false;
            for n in CLIENTS {
                let mut clients: Option<Clients> = None;
                group.throughput(Throughput::Elements(n as u64));
                let id = BenchmarkId::new(format!("{}-{model}", rung.lang), n);
                group.bench_function(id, |b| {
                    let site = site.get_or_insert_with(|| Site::start(rung, WORKERS));
                    if !warmed {
                        site.warm(model);
                        warmed = true;
                    }
                    let clients = clients.get_or_insert_with(|| {
                        let clients = Clients::start(site.addr(), &site.path(model), n)
                            .expect("connect the clients");
                        site.round(&clients, 2);
                        clients
                    });
                    b.iter_custom(|iters| site.round(clients, iters))
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, models);
criterion_main!(benches);
