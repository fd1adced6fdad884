//! Gorilla-style chunk encoding (Pelkonen et al., VLDB 2015, as Prometheus
//! uses it): timestamps as delta-of-delta, each value column XORed with its
//! predecessor. A regular scrape costs about one bit per timestamp and a
//! slowly moving value a few bits, which is what makes keeping every
//! sample for days affordable.
//!
//! A chunk holds rows of one timestamp and `cols` values: one column for
//! raw samples, four (min, max, avg, last) for rollups. Blob layout:
//! `[version][cols][count: u16 LE][bits…]`.

const VERSION: u8 = 1;
const HEADER: usize = 4;
/// Rows a chunk may hold (the count is a u16).
pub const MAX_ROWS: usize = u16::MAX as usize;

#[derive(Debug, Clone, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 = the last byte is full or there is none).
    used: u8,
}

impl BitWriter {
    fn push(&mut self, value: u64, bits: u8) {
        let mut left = bits;
        while left > 0 {
            if self.used == 0 {
                self.bytes.push(0);
            }
            let free = 8 - self.used;
            let take = free.min(left);
            let chunk = ((value >> (left - take)) & ((1u64 << take) - 1)) as u8;
            if let Some(last) = self.bytes.last_mut() {
                *last |= chunk << (free - take);
            }
            self.used = (self.used + take) % 8;
            left -= take;
        }
    }

    fn bit(&mut self, b: bool) {
        self.push(u64::from(b), 1);
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn read(&mut self, bits: u8) -> Option<u64> {
        let mut out = 0u64;
        let mut left = bits;
        while left > 0 {
            let byte = *self.bytes.get(self.pos / 8)?;
            let offset = (self.pos % 8) as u8;
            let avail = 8 - offset;
            let take = avail.min(left);
            let chunk = (byte >> (avail - take)) & (((1u16 << take) - 1) as u8);
            out = (out << take) | u64::from(chunk);
            self.pos += usize::from(take);
            left -= take;
        }
        Some(out)
    }

    fn bit(&mut self) -> Option<bool> {
        self.read(1).map(|b| b == 1)
    }
}

/// Per-column XOR state.
#[derive(Debug, Clone, Copy, Default)]
struct XorState {
    prev: u64,
    leading: u8,
    trailing: u8,
    /// Whether `leading`/`trailing` describe a previous non-zero XOR.
    window: bool,
}

/// An open chunk that rows are appended to.
#[derive(Debug, Clone)]
pub struct ChunkWriter {
    bits: BitWriter,
    cols: u8,
    count: u16,
    first_ts: i64,
    last_ts: i64,
    delta: i64,
    xor: Vec<XorState>,
}

impl ChunkWriter {
    pub fn new(cols: u8) -> Self {
        ChunkWriter {
            bits: BitWriter::default(),
            cols,
            count: 0,
            first_ts: 0,
            last_ts: 0,
            delta: 0,
            xor: vec![XorState::default(); usize::from(cols)],
        }
    }

    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn is_full(&self) -> bool {
        self.len() >= MAX_ROWS
    }

    pub fn first_ts(&self) -> i64 {
        self.first_ts
    }

    pub fn last_ts(&self) -> i64 {
        self.last_ts
    }

    /// Appends one row. Rows must come in time order: a timestamp not after
    /// the last one is ignored (returns false), as is a full chunk or a row
    /// of the wrong width.
    pub fn append(&mut self, ts: i64, values: &[f64]) -> bool {
        if values.len() != usize::from(self.cols) || self.is_full() || (self.count > 0 && ts <= self.last_ts) {
            return false;
        }
        if self.count == 0 {
            self.bits.push(ts as u64, 64);
            self.first_ts = ts;
            for (state, v) in self.xor.iter_mut().zip(values) {
                state.prev = v.to_bits();
                self.bits.push(state.prev, 64);
            }
        } else {
            let delta = ts - self.last_ts;
            self.put_dod(delta - self.delta);
            self.delta = delta;
            for (i, v) in values.iter().enumerate() {
                self.put_xor(i, v.to_bits());
            }
        }
        self.last_ts = ts;
        self.count += 1;
        true
    }

    fn put_dod(&mut self, dod: i64) {
        let w = &mut self.bits;
        let fits = |bits: u32| -(1i64 << (bits - 1)) <= dod && dod < (1i64 << (bits - 1));
        if dod == 0 {
            w.bit(false);
        } else if fits(14) {
            w.push(0b10, 2);
            w.push(dod as u64 & ((1 << 14) - 1), 14);
        } else if fits(17) {
            w.push(0b110, 3);
            w.push(dod as u64 & ((1 << 17) - 1), 17);
        } else if fits(20) {
            w.push(0b1110, 4);
            w.push(dod as u64 & ((1 << 20) - 1), 20);
        } else {
            w.push(0b1111, 4);
            w.push(dod as u64, 64);
        }
    }

    fn put_xor(&mut self, col: usize, bits: u64) {
        let Some(state) = self.xor.get_mut(col) else { return };
        let xor = bits ^ state.prev;
        state.prev = bits;
        let w = &mut self.bits;
        if xor == 0 {
            w.bit(false);
            return;
        }
        w.bit(true);
        // Leading zeros are capped at 31 to fit in 5 bits.
        let leading = (xor.leading_zeros() as u8).min(31);
        let trailing = xor.trailing_zeros() as u8;
        if state.window && leading >= state.leading && trailing >= state.trailing {
            w.bit(false);
            let significant = 64 - state.leading - state.trailing;
            w.push(xor >> state.trailing, significant);
        } else {
            w.bit(true);
            let significant = 64 - leading - trailing;
            w.push(u64::from(leading), 5);
            // 64 significant bits are written as 0 (6 bits hold 0..=63).
            w.push(u64::from(significant % 64), 6);
            w.push(xor >> trailing, significant);
            *state = XorState { prev: bits, leading, trailing, window: true };
        }
    }

    /// The chunk as stored: header and bits so far. The writer stays usable.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.bits.bytes.len());
        out.push(VERSION);
        out.push(self.cols);
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.bits.bytes);
        out
    }
}

/// Why a stored chunk could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("chunk is {0} bytes, shorter than its header")]
    Short(usize),
    #[error("chunk format version {0} is unknown to this build")]
    Version(u8),
    #[error("chunk ends before its {0} rows")]
    Truncated(u16),
}

/// Reads the rows of a stored chunk in order.
pub struct ChunkReader<'a> {
    bits: BitReader<'a>,
    cols: u8,
    count: u16,
    read: u16,
    ts: i64,
    delta: i64,
    xor: Vec<XorState>,
}

impl<'a> ChunkReader<'a> {
    pub fn new(chunk: &'a [u8]) -> Result<Self, ChunkError> {
        if chunk.len() < HEADER {
            return Err(ChunkError::Short(chunk.len()));
        }
        if chunk[0] != VERSION {
            return Err(ChunkError::Version(chunk[0]));
        }
        let cols = chunk[1];
        let count = u16::from_le_bytes([chunk[2], chunk[3]]);
        Ok(ChunkReader {
            bits: BitReader { bytes: &chunk[HEADER..], pos: 0 },
            cols,
            count,
            read: 0,
            ts: 0,
            delta: 0,
            xor: vec![XorState::default(); usize::from(cols)],
        })
    }

    pub fn cols(&self) -> usize {
        usize::from(self.cols)
    }

    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The next row's timestamp, its values written to `out` (which must
    /// hold [`Self::cols`] values); `Ok(None)` after the last row.
    pub fn next_row(&mut self, out: &mut [f64]) -> Result<Option<i64>, ChunkError> {
        if self.read >= self.count {
            return Ok(None);
        }
        self.row(out).ok_or(ChunkError::Truncated(self.count)).map(Some)
    }

    fn row(&mut self, out: &mut [f64]) -> Option<i64> {
        if self.read == 0 {
            self.ts = self.bits.read(64)? as i64;
            for (state, slot) in self.xor.iter_mut().zip(out.iter_mut()) {
                state.prev = self.bits.read(64)?;
                *slot = f64::from_bits(state.prev);
            }
        } else {
            let dod = self.dod()?;
            self.delta += dod;
            self.ts += self.delta;
            for (i, slot) in out.iter_mut().enumerate().take(usize::from(self.cols)) {
                *slot = f64::from_bits(self.xor_value(i)?);
            }
        }
        self.read += 1;
        Some(self.ts)
    }

    fn dod(&mut self) -> Option<i64> {
        let sign_extend = |v: u64, bits: u32| ((v << (64 - bits)) as i64) >> (64 - bits);
        if !self.bits.bit()? {
            return Some(0);
        }
        if !self.bits.bit()? {
            return Some(sign_extend(self.bits.read(14)?, 14));
        }
        if !self.bits.bit()? {
            return Some(sign_extend(self.bits.read(17)?, 17));
        }
        if !self.bits.bit()? {
            return Some(sign_extend(self.bits.read(20)?, 20));
        }
        Some(self.bits.read(64)? as i64)
    }

    fn xor_value(&mut self, col: usize) -> Option<u64> {
        let bits = &mut self.bits;
        let state = self.xor.get_mut(col)?;
        if !bits.bit()? {
            return Some(state.prev);
        }
        if bits.bit()? {
            let leading = bits.read(5)? as u8;
            let significant = match bits.read(6)? as u8 {
                0 => 64,
                n => n,
            };
            state.leading = leading;
            state.trailing = 64 - leading - significant;
        }
        let significant = 64 - state.leading - state.trailing;
        let xor = bits.read(significant)? << state.trailing;
        state.prev ^= xor;
        Some(state.prev)
    }
}

/// Every row of `chunk` (tests and tools; queries stream with [`ChunkReader`]).
pub fn decode(chunk: &[u8]) -> Result<Vec<(i64, Vec<f64>)>, ChunkError> {
    let mut reader = ChunkReader::new(chunk)?;
    let mut rows = Vec::with_capacity(reader.len());
    let mut values = vec![0.0; reader.cols()];
    while let Some(ts) = reader.next_row(&mut values)? {
        rows.push((ts, values.clone()));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(cols: u8, rows: &[(i64, Vec<f64>)]) -> Vec<u8> {
        let mut w = ChunkWriter::new(cols);
        for (ts, v) in rows {
            assert!(w.append(*ts, v));
        }
        let bytes = w.bytes();
        let back = decode(&bytes).expect("decodes");
        assert_eq!(back.len(), rows.len());
        for ((t1, v1), (t2, v2)) in back.iter().zip(rows) {
            assert_eq!(t1, t2);
            for (a, b) in v1.iter().zip(v2) {
                assert_eq!(a.to_bits(), b.to_bits(), "value at {t1}");
            }
        }
        bytes
    }

    #[test]
    fn regular_samples_cost_a_few_bits() {
        let per_sample = |values: &dyn Fn(i64) -> f64| {
            let rows: Vec<_> = (0..120).map(|i| (1_700_000_000_000 + i * 10_000, vec![values(i)])).collect();
            roundtrip(1, &rows).len() as f64 / 120.0
        };
        // A steady gauge: a bit of time and a bit of value per row, after
        // the 20 bytes of header and first row.
        assert!(per_sample(&|_| 42.0) < 0.5);
        // A counter moving by a varying integer amount: Gorilla's worst
        // common case, a dozen bits of mantissa per step.
        let counter = per_sample(&|i| (1000 + i * 37 + i % 7) as f64);
        assert!(counter < 2.5, "{counter} bytes per sample");
    }

    #[test]
    fn awkward_values_and_timestamps_survive() {
        let specials = [0.0, -0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, f64::MIN_POSITIVE, f64::MAX, 1e-300, -3.25, 0.1];
        let mut ts = -5_000i64;
        let mut rows = Vec::new();
        let jumps = [1, 10_000, 9_999, 10_001, 7_000_000, 1, 1 << 40, 3, 250_000, 12];
        for (i, v) in specials.iter().enumerate() {
            ts += jumps[i];
            rows.push((ts, vec![*v, -*v, i as f64]));
        }
        roundtrip(3, &rows);
    }

    #[test]
    fn out_of_order_and_wrong_width_rows_are_refused() {
        let mut w = ChunkWriter::new(1);
        assert!(w.append(10, &[1.0]));
        assert!(!w.append(10, &[2.0]));
        assert!(!w.append(5, &[2.0]));
        assert!(!w.append(20, &[1.0, 2.0]));
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn damaged_chunks_are_errors_not_panics() {
        let mut w = ChunkWriter::new(1);
        for i in 0..50 {
            w.append(i * 1000, &[i as f64 * 1.5]);
        }
        let bytes = w.bytes();
        assert_eq!(decode(&bytes[..2]).unwrap_err(), ChunkError::Short(2));
        assert_eq!(decode(&bytes[..bytes.len() / 2]).unwrap_err(), ChunkError::Truncated(50));
        let mut other = bytes.clone();
        other[0] = 9;
        assert_eq!(decode(&other).unwrap_err(), ChunkError::Version(9));
    }

    #[test]
    fn a_partial_snapshot_reads_back_while_the_writer_goes_on() {
        let mut w = ChunkWriter::new(1);
        for i in 0..10 {
            w.append(i * 10, &[i as f64]);
        }
        let snapshot = w.bytes();
        w.append(100, &[10.0]);
        assert_eq!(decode(&snapshot).expect("decodes").len(), 10);
        assert_eq!(decode(&w.bytes()).expect("decodes").len(), 11);
    }
}
