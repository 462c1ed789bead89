//! Gzip decompression of whole kubelet bodies with one reusable inflater per scrape worker.
//!
//! Kubelets answer `/metrics/resource` gzip-compressed when asked (`Accept-Encoding: gzip`). Building a fresh
//! `flate2` gzip decoder per body allocates and zeroes ~40 KiB of inflate state (window and tables) for a body of a
//! few KiB; at 5,000 nodes that churn was the largest single cost of scraping (glibc `malloc_consolidate`,
//! `memset`, `init_tree` in the profile in `BENCHMARKS.md`). [`Gunzip`] keeps one raw-deflate
//! [`flate2::Decompress`] and resets it between bodies. The gzip framing around the deflate stream (RFC 1952: a
//! 10-byte header with optional extra/name/comment/header-CRC fields, then CRC-32 and length trailers) is read
//! here; the CRC-32 is `flate2::Crc`'s. Concatenated members are decoded one after another, as Go's reader does.
//!
//! # Fast path
//! A kubelet body is one gzip member (Go's `gzip.Writer`). For that case libdeflate (`libdeflater`) inflates the
//! whole buffer 1.8–1.9× faster than the streaming inflater (`cargo bench --bench decode -- gunzip`), straight into an
//! output sized by the trailer's ISIZE. Its safe API does not say how much input it consumed, and it ignores bytes
//! after the first member, so its result is accepted only when it provably covers the whole input: the output's own
//! CRC-32 and length, as an 8-byte trailer, must first occur in the input at its very end. In a multi-member stream
//! the first member's trailer comes earlier, so such input always takes the streaming path; so does anything
//! libdeflate rejects, a size over the cap, or (very rarely) a body whose compressed bytes happen to contain its own
//! trailer. The streaming path stays the reference for every result and error.
//!
//! This module knows nothing of HTTP or of what the body contains.

use flate2::{Crc, Decompress, FlushDecompress, Status};

/// Why a gzip body could not be decompressed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GunzipError {
    /// The decompressed body would exceed the cap (bytes).
    #[error("decompressed body exceeds {0} bytes")]
    TooLarge(usize),
    /// Not a gzip stream, or a corrupt or truncated one.
    #[error("invalid gzip stream: {0}")]
    Invalid(&'static str),
}

/// A reusable gzip decompressor: its inflate state is allocated on first use and reset between bodies.
#[derive(Default)]
pub struct Gunzip {
    inflate: Option<Box<Decompress>>,
    whole: Option<libdeflater::Decompressor>,
    /// Bodies decoded by the fast path and by the streaming path (see the module docs), for tests.
    #[cfg(test)]
    paths: (usize, usize),
}

impl std::fmt::Debug for Gunzip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gunzip")
            .field("streaming", &self.inflate.is_some())
            .field("whole", &self.whole.is_some())
            .finish()
    }
}

/// The smallest output reservation per step when the trailer gives no usable size hint.
const MIN_STEP: usize = 16 << 10;

const FTEXT: u8 = 1;
const FHCRC: u8 = 2;
const FEXTRA: u8 = 4;
const FNAME: u8 = 8;
const FCOMMENT: u8 = 16;

impl Gunzip {
    /// Decompresses the whole gzip stream `input` and appends it to `out`, failing once `out` would exceed
    /// `limit` bytes (what was decoded up to the cap stays in `out`).
    ///
    /// # Errors
    /// [`GunzipError::TooLarge`] past the cap; [`GunzipError::Invalid`] for a bad header, corrupt deflate data,
    /// a CRC or length mismatch, or a truncated stream.
    pub fn decompress(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), GunzipError> {
        let start = out.len();
        if let Some((header, size)) = single_member(input, limit.saturating_sub(start)) {
            out.resize(start + size, 0);
            if self.whole_member(input, header, &mut out[start..]) {
                return Ok(());
            }
            out.truncate(start);
        }
        self.streaming(input, out, limit)
    }

    /// Decompresses the whole gzip stream `input` into `scratch` and returns the body's length: the body is
    /// `scratch[..n]`. Same results and errors as [`Gunzip::decompress`] with an empty `out`.
    ///
    /// `scratch`'s bytes are overwritten, and it keeps its length (bytes past the body are left over from earlier
    /// bodies), so a body no longer than an earlier one is inflated without zeroing its output first.
    ///
    /// # Errors
    /// As [`Gunzip::decompress`].
    pub fn decompress_reusing(
        &mut self,
        input: &[u8],
        scratch: &mut Vec<u8>,
        limit: usize,
    ) -> Result<usize, GunzipError> {
        if let Some((header, size)) = single_member(input, limit) {
            if scratch.len() < size {
                scratch.resize(size, 0);
            }
            if self.whole_member(input, header, &mut scratch[..size]) {
                return Ok(size);
            }
        }
        scratch.clear();
        self.streaming(input, scratch, limit)?;
        Ok(scratch.len())
    }

    /// The fast path: `true` when `input` (whose member header is `header` bytes long) is exactly one gzip member
    /// that libdeflate decoded into the whole of `out`, whose length is the trailer's ISIZE.
    fn whole_member(&mut self, input: &[u8], header: usize, out: &mut [u8]) -> bool {
        let decoder = self
            .whole
            .get_or_insert_with(libdeflater::Decompressor::new);
        match decoder.gzip_decompress(input, out) {
            Ok(n) if n == out.len() => {}
            _ => return false,
        }
        // libdeflate checked this CRC against the *first* member's trailer, whose position we do not know; the input's
        // last 8 bytes may belong to a later member. Recomputing it (≈ 1 µs for 30 KiB) gives the first member's
        // trailer bytes to search for; taking the last 8 bytes instead would accept a multi-member stream.
        let mut crc = Crc::new();
        crc.update(out);
        let mut own = [0u8; 8];
        own[..4].copy_from_slice(&crc.sum().to_le_bytes());
        // ISIZE is the length modulo 2^32 (RFC 1952 §2.3.1); the length equals the trailer's value, which fits.
        #[allow(clippy::cast_possible_truncation)]
        own[4..].copy_from_slice(&(out.len() as u32).to_le_bytes());
        // The first member's trailer is the first place its (CRC, size) can occur after its header: at the very
        // end, the input is exactly that member.
        let whole = memchr::memmem::find(&input[header..], &own) == Some(input.len() - 8 - header);
        #[cfg(test)]
        if whole {
            self.paths.0 += 1;
        }
        whole
    }

    /// The reference path: a streaming inflater over each member in turn.
    fn streaming(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), GunzipError> {
        #[cfg(test)]
        {
            self.paths.1 += 1;
        }
        let inflate = self
            .inflate
            .get_or_insert_with(|| Box::new(Decompress::new(false)));
        let mut first = true;
        // Go's reader accepts concatenated members; trailing bytes that are not a member are an error there too.
        while first || !input.is_empty() {
            first = false;
            inflate.reset(false);
            let header = header_len(input)?;
            input = &input[header..];
            // The trailer's ISIZE is the member's length mod 2^32: a good first reservation for single-member
            // bodies (the common case), never trusted beyond the cap.
            if let Some(size) = trailing_size(input) {
                out.reserve(size.min(limit.saturating_sub(out.len())));
            }
            let start = out.len();
            let consumed = inflate_member(inflate, input, out, limit)?;
            input = &input[consumed..];
            let Some((trailer, rest)) = input.split_first_chunk::<8>() else {
                return Err(GunzipError::Invalid("truncated trailer"));
            };
            let mut crc = Crc::new();
            crc.update(&out[start..]);
            let [c0, c1, c2, c3, s0, s1, s2, s3] = *trailer;
            if crc.sum() != u32::from_le_bytes([c0, c1, c2, c3]) {
                return Err(GunzipError::Invalid("CRC-32 mismatch"));
            }
            // ISIZE is the length modulo 2^32 (RFC 1952 §2.3.1); truncation is the definition.
            #[allow(clippy::cast_possible_truncation)]
            let size = (out.len() - start) as u32;
            if size != u32::from_le_bytes([s0, s1, s2, s3]) {
                return Err(GunzipError::Invalid("length mismatch"));
            }
            input = rest;
        }
        Ok(())
    }
}

/// Inflates one member's deflate stream from `input` into `out`; returns the input bytes consumed.
fn inflate_member(
    inflate: &mut Decompress,
    input: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<usize, GunzipError> {
    let in_before = inflate.total_in();
    loop {
        if out.len() == out.capacity() {
            let room = limit.saturating_sub(out.len());
            if room == 0 {
                // Anything left to produce is over the cap; a stream that is exactly at its end is not.
                let mut probe = [0u8; 1];
                let at = consumed(inflate, in_before);
                let before = inflate.total_out();
                let status = inflate
                    .decompress(&input[at..], &mut probe, FlushDecompress::None)
                    .map_err(|_| GunzipError::Invalid("corrupt deflate data"))?;
                if inflate.total_out() > before {
                    return Err(GunzipError::TooLarge(limit));
                }
                if status == Status::StreamEnd {
                    return Ok(consumed(inflate, in_before));
                }
                return Err(GunzipError::Invalid("truncated deflate data"));
            }
            out.reserve(room.min(MIN_STEP.max(out.len())));
        }
        let consumed_before = consumed(inflate, in_before);
        let out_before = out.len();
        let status = inflate
            .decompress_vec(&input[consumed_before..], out, FlushDecompress::None)
            .map_err(|_| GunzipError::Invalid("corrupt deflate data"))?;
        if out.len() > limit {
            out.truncate(limit);
            return Err(GunzipError::TooLarge(limit));
        }
        match status {
            Status::StreamEnd => return Ok(consumed(inflate, in_before)),
            Status::Ok | Status::BufError => {
                let progressed =
                    consumed(inflate, in_before) > consumed_before || out.len() > out_before;
                if !progressed && out.len() < out.capacity() {
                    return Err(GunzipError::Invalid("truncated deflate data"));
                }
            }
        }
    }
}

/// `(header length, ISIZE)` when `input` may be one whole member (a valid header, room for a trailer) whose
/// trailer's size is at most `room`: the candidates for the fast path.
fn single_member(input: &[u8], room: usize) -> Option<(usize, usize)> {
    let header = header_len(input).ok()?;
    let (_, trailer) = input.split_last_chunk::<8>()?;
    let [.., s0, s1, s2, s3] = *trailer;
    let size = usize::try_from(u32::from_le_bytes([s0, s1, s2, s3])).ok()?;
    (size <= room && input.len() >= header + 8).then_some((header, size))
}

/// Input bytes consumed since `before` (bounded by the input slice, so it fits `usize`).
fn consumed(inflate: &Decompress, before: u64) -> usize {
    usize::try_from(inflate.total_in() - before).unwrap_or(usize::MAX)
}

/// The ISIZE field of a single-member stream whose deflate data is `member` (header already skipped).
fn trailing_size(member: &[u8]) -> Option<usize> {
    let (_, size) = member.split_last_chunk::<4>()?;
    usize::try_from(u32::from_le_bytes(*size)).ok()
}

/// Length of the RFC 1952 member header at the start of `input`.
fn header_len(input: &[u8]) -> Result<usize, GunzipError> {
    let invalid = GunzipError::Invalid;
    let Some(([id1, id2, cm, flags, ..], _)) = input.split_first_chunk::<10>() else {
        return Err(invalid("truncated header"));
    };
    if (*id1, *id2) != (0x1f, 0x8b) {
        return Err(invalid("not a gzip stream"));
    }
    if *cm != 8 {
        return Err(invalid("compression method is not deflate"));
    }
    if flags & !(FTEXT | FHCRC | FEXTRA | FNAME | FCOMMENT) != 0 {
        return Err(invalid("reserved header flags set"));
    }
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let Some([lo, hi]) = input
            .get(at..at + 2)
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
        else {
            return Err(invalid("truncated header"));
        };
        at += 2 + usize::from(u16::from_le_bytes([lo, hi]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let field = input.get(at..).ok_or(invalid("truncated header"))?;
            let end = memchr::memchr(0, field).ok_or(invalid("truncated header"))?;
            at += end + 1;
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    if at > input.len() {
        return Err(invalid("truncated header"));
    }
    Ok(at)
}

#[cfg(test)]
mod tests;
