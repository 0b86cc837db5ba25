//! The pure hot paths every request crosses, so regressions show: request head →
//! meta-variables, the script's header block, FastCGI records.

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::inputs;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};

/// A group of fast, pure benchmarks: short warm-up and measurement.
fn quick<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1));
    group
}

/// What does the server spend turning a browser's request (~520 bytes, 11 headers)
/// into a `Request`, and that `Request` into a script's RFC 3875 environment?
fn parse_request(c: &mut Criterion) {
    let mut group = quick(c, "parse_request");
    group.throughput(Throughput::Bytes(inputs::REQUEST_HEAD.len() as u64));
    group.bench_function("head", |b| {
        b.iter(|| inputs::parse_head(black_box(inputs::REQUEST_HEAD)))
    });
    group.throughput(Throughput::Elements(1));
    let (req, script, site) = (inputs::request(), inputs::script(), inputs::site());
    group.bench_function("meta_variables", |b| {
        b.iter(|| inputs::meta_variables(black_box(&req), &script, &site))
    });
    group.finish();
}

/// What does reading a script's header block (Status, Content-Type, Content-Length,
/// a cookie, a hop-by-hop header to drop) cost per response?
fn parse_cgi_response(c: &mut Criterion) {
    let mut group = quick(c, "parse_cgi_response");
    group.bench_function("headers", |b| {
        b.iter(|| inputs::parse_cgi_response(black_box(inputs::CGI_RESPONSE)))
    });
    group.finish();
}

/// What does the FastCGI framing of one request and its ~1 KiB answer cost on each
/// side: BEGIN_REQUEST + PARAMS (the meta-variables) + empty STDIN, and STDOUT +
/// END_REQUEST, encoded and decoded?
fn fastcgi_records(c: &mut Criterion) {
    let mut group = quick(c, "fastcgi_records");
    let params = inputs::meta_variables(&inputs::request(), &inputs::script(), &inputs::site());
    let stdout = inputs::stdout_payload();
    let mut request = Vec::new();
    inputs::encode_request(&mut request, &params);
    let mut response = Vec::new();
    inputs::encode_response(&mut response, &stdout);
    let mut buf = Vec::with_capacity(4096);
    let mut out = Vec::with_capacity(4096);

    group.throughput(Throughput::Bytes(request.len() as u64));
    group.bench_function("encode_request", |b| {
        b.iter(|| {
            buf.clear();
            inputs::encode_request(&mut buf, black_box(&params));
            buf.len()
        })
    });
    group.bench_function("decode_request", |b| {
        b.iter(|| {
            out.clear();
            inputs::decode(black_box(&request), &mut out)
        })
    });
    group.throughput(Throughput::Bytes(response.len() as u64));
    group.bench_function("encode_stdout_1k", |b| {
        b.iter(|| {
            buf.clear();
            inputs::encode_response(&mut buf, black_box(&stdout));
            buf.len()
        })
    });
    group.bench_function("decode_stdout_1k", |b| {
        b.iter(|| {
            out.clear();
            inputs::decode(black_box(&response), &mut out)
        })
    });
    group.finish();
}

criterion_group!(benches, parse_request, parse_cgi_response, fastcgi_records);
criterion_main!(benches);
