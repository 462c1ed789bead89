#![allow(clippy::expect_used)] // A test fails by panicking; `expect` says which step broke.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::GzBuilder;
use flate2::write::GzEncoder;

use super::*;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).expect("compress");
    encoder.finish().expect("finish")
}

/// A body shaped like a kubelet's: many similar lines.
fn body(lines: usize, seed: u64) -> Vec<u8> {
    let mut text = String::new();
    for i in 0..lines {
        let v = (seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(i as u64))
            % 1_000_003;
        text.push_str(&format!(
            "container_cpu_usage_seconds_total{{container=\"c{i}\",namespace=\"ns\",pod=\"p{}\"}} {v}.5 1700000000000\n",
            i / 2
        ));
    }
    text.into_bytes()
}

/// Decompresses `input` with [`Gunzip::decompress`], after checking that [`Gunzip::decompress_reusing`] gives the
/// same body or error whatever its scratch buffer held before (nothing, a few bytes, more than the body).
fn gunzip(input: &[u8], limit: usize) -> (Result<(), GunzipError>, Vec<u8>) {
    let mut out = Vec::new();
    let result = Gunzip::default().decompress(input, &mut out, limit);
    for scratch_len in [0, 3, out.len() + 100] {
        let mut scratch = vec![0xa5; scratch_len];
        let reused = Gunzip::default().decompress_reusing(input, &mut scratch, limit);
        match (&result, reused) {
            (Ok(()), Ok(n)) => {
                assert_eq!(scratch.get(..n), Some(&out[..]), "scratch of {scratch_len}")
            }
            (Err(want), Err(got)) => assert_eq!(&got, want, "scratch of {scratch_len}"),
            (want, got) => panic!("scratch of {scratch_len}: {got:?}, against {want:?}"),
        }
    }
    (result, out)
}

#[test]
fn bodies_decompress_to_what_was_compressed() {
    let cases: [(&str, Vec<u8>); 4] = [
        ("empty body", Vec::new()),
        ("one line", body(1, 1)),
        ("a 70-pod-sized body", body(300, 2)),
        ("a body far larger than one output step", body(5_000, 3)),
    ];
    for (name, data) in cases {
        let (result, out) = gunzip(&gzip(&data), usize::MAX);
        assert_eq!(result, Ok(()), "{name}");
        assert_eq!(out, data, "{name}");
    }
}

#[test]
fn one_inflater_reused_across_bodies_gives_the_same_bytes_as_a_fresh_decoder() {
    let mut gunzip = Gunzip::default();
    for seed in 0..50u64 {
        let data = body(1 + (seed as usize * 37) % 400, seed);
        let compressed = gzip(&data);
        let mut want = Vec::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_end(&mut want)
            .expect("reference decoder");
        let mut out = Vec::new();
        gunzip
            .decompress(&compressed, &mut out, usize::MAX)
            .expect("decompress");
        assert_eq!(out, want, "body {seed}");
    }
}

#[test]
fn one_scratch_reused_across_longer_and_shorter_bodies_holds_each_body_exactly() {
    let mut gunzip = Gunzip::default();
    let mut scratch = Vec::new();
    for (i, lines) in [300, 20, 301, 1, 0, 150].into_iter().enumerate() {
        let data = body(lines, i as u64);
        let n = gunzip
            .decompress_reusing(&gzip(&data), &mut scratch, usize::MAX)
            .expect("decompress");
        assert_eq!(&scratch[..n], &data[..], "body {i} ({lines} lines)");
    }
    // The empty body's trailer (eight zero bytes) also starts one byte earlier, inside its deflate data: that one
    // body takes the streaming path.
    assert_eq!(gunzip.paths, (5, 1));
}

#[test]
fn optional_header_fields_are_skipped() {
    let data = body(20, 9);
    let mut encoder = GzBuilder::new()
        .filename("metrics.txt")
        .comment("from a kubelet")
        .extra(vec![1, 2, 3, 4])
        .write(Vec::new(), Compression::fast());
    encoder.write_all(&data).expect("compress");
    let with_fields = encoder.finish().expect("finish");
    let (result, out) = gunzip(&with_fields, usize::MAX);
    assert_eq!(result, Ok(()));
    assert_eq!(out, data);

    // FHCRC: two header-CRC bytes after the fixed header (flate2 never writes them; Go's writer neither).
    let mut plain = gzip(&data);
    plain[3] |= FHCRC;
    plain.splice(10..10, [0xab, 0xcd]);
    let (result, out) = gunzip(&plain, usize::MAX);
    assert_eq!(result, Ok(()), "header CRC field");
    assert_eq!(out, data);
}

#[test]
fn concatenated_members_are_decoded_in_order() {
    let (a, b) = (body(10, 1), body(15, 2));
    let mut stream = gzip(&a);
    stream.extend(gzip(&b));
    let (result, out) = gunzip(&stream, usize::MAX);
    assert_eq!(result, Ok(()));
    assert_eq!(out, [a, b].concat());
}

#[test]
fn the_cap_is_enforced_on_the_decompressed_size() {
    let data = body(200, 5);
    let compressed = gzip(&data);
    let cases = [
        ("exactly at the cap", data.len(), Ok(())),
        (
            "one byte under",
            data.len() - 1,
            Err(GunzipError::TooLarge(data.len() - 1)),
        ),
        ("far under", 100, Err(GunzipError::TooLarge(100))),
    ];
    for (name, limit, want) in cases {
        let (result, out) = gunzip(&compressed, limit);
        assert_eq!(result, want, "{name}");
        assert!(out.len() <= limit, "{name}: {} bytes kept", out.len());
        assert_eq!(
            out,
            data[..out.len()],
            "{name}: the kept prefix is the body's"
        );
    }
}

#[test]
fn a_bomb_stops_at_the_cap() {
    let zeros = vec![0u8; 8 << 20];
    let compressed = gzip(&zeros);
    assert!(compressed.len() < 64 << 10, "the bomb is small on the wire");
    let (result, out) = gunzip(&compressed, 1 << 20);
    assert_eq!(result, Err(GunzipError::TooLarge(1 << 20)));
    assert!(out.len() <= 1 << 20);
}

#[test]
fn broken_streams_are_rejected_with_a_reason() {
    let data = body(50, 7);
    let good = gzip(&data);
    let mut bad_crc = good.clone();
    let n = bad_crc.len();
    bad_crc[n - 8] ^= 0xff;
    let mut bad_size = good.clone();
    bad_size[n - 1] ^= 0x01;
    let mut bad_method = good.clone();
    bad_method[2] = 7;
    let mut reserved_flag = good.clone();
    reserved_flag[3] |= 0x80;
    let mut corrupt = good.clone();
    for byte in &mut corrupt[12..40] {
        *byte = 0xff;
    }
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"junk after the member");
    let cases: [(&str, &[u8], &str); 10] = [
        ("empty input", b"", "truncated header"),
        ("plain text", b"cpu 1 2 3 4 5 6 7 8", "not a gzip stream"),
        ("short header", &good[..6], "truncated header"),
        (
            "wrong method",
            &bad_method,
            "compression method is not deflate",
        ),
        ("reserved flag", &reserved_flag, "reserved header flags set"),
        (
            "truncated data",
            &good[..good.len() / 2],
            "truncated deflate data",
        ),
        ("missing trailer", &good[..n - 3], "truncated trailer"),
        ("CRC mismatch", &bad_crc, "CRC-32 mismatch"),
        ("length mismatch", &bad_size, "length mismatch"),
        ("trailing garbage", &trailing, "not a gzip stream"),
    ];
    for (name, input, reason) in cases {
        let (result, _) = gunzip(input, usize::MAX);
        match result {
            Err(GunzipError::Invalid(got)) => assert_eq!(got, reason, "{name}"),
            other => {
                // Corrupt deflate bytes may fail as corrupt or as a CRC mismatch; anything but success is fine
                // for those, but these cases all have a definite reason.
                panic!("{name}: {other:?}")
            }
        }
    }
    let (result, _) = gunzip(&corrupt, usize::MAX);
    assert!(
        matches!(result, Err(GunzipError::Invalid(_))),
        "overwritten deflate data: {result:?}"
    );
}

#[test]
fn single_members_take_the_fast_path_and_anything_else_the_streaming_one() {
    let data = body(200, 11);
    let one = gzip(&data);
    let mut twice = one.clone();
    twice.extend_from_slice(&one);
    let mut two_different = gzip(&body(5, 1));
    two_different.extend_from_slice(&one);
    let mut lying_size = one.clone();
    let n = lying_size.len();
    lying_size[n - 4] ^= 0x01;
    struct Case<'a> {
        name: &'a str,
        input: &'a [u8],
        limit: usize,
        want: Result<Vec<u8>, GunzipError>,
        /// (fast, streaming) paths taken.
        want_paths: (usize, usize),
    }
    let cases = [
        Case {
            name: "one member",
            input: &one,
            limit: usize::MAX,
            want: Ok(data.clone()),
            want_paths: (1, 0),
        },
        Case {
            name: "the same member twice: its trailer occurs before the end",
            input: &twice,
            limit: usize::MAX,
            want: Ok([data.clone(), data.clone()].concat()),
            want_paths: (0, 1),
        },
        Case {
            name: "two different members",
            input: &two_different,
            limit: usize::MAX,
            want: Ok([body(5, 1), data.clone()].concat()),
            want_paths: (0, 1),
        },
        Case {
            name: "a trailer size that does not match",
            input: &lying_size,
            limit: usize::MAX,
            want: Err(GunzipError::Invalid("length mismatch")),
            want_paths: (0, 1),
        },
        Case {
            name: "a declared size over the cap",
            input: &one,
            limit: 100,
            want: Err(GunzipError::TooLarge(100)),
            want_paths: (0, 1),
        },
    ];
    for case in cases {
        let mut gunzip = Gunzip::default();
        let mut out = Vec::new();
        let result = gunzip.decompress(case.input, &mut out, case.limit);
        match case.want {
            Ok(want) => {
                assert_eq!(result, Ok(()), "{}", case.name);
                assert_eq!(out, want, "{}", case.name);
            }
            Err(want) => assert_eq!(result, Err(want), "{}", case.name),
        }
        assert_eq!(gunzip.paths, case.want_paths, "{}: paths", case.name);
    }
}

#[test]
fn the_fast_path_appends_after_what_the_buffer_already_holds() {
    let data = body(30, 4);
    let mut gunzip = Gunzip::default();
    let mut out = b"prefix:".to_vec();
    gunzip
        .decompress(&gzip(&data), &mut out, usize::MAX)
        .expect("decompress");
    assert_eq!(out, [b"prefix:".to_vec(), data].concat());
    assert_eq!(gunzip.paths, (1, 0));
}
