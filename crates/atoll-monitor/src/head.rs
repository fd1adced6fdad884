//! The open end of every series, in memory: the raw chunk being filled,
//! the minute and hour being summed up, and the rollup chunks being
//! filled. Rollups are computed here, as samples arrive, so building them
//! never rereads stored data; writing happens later, off the ingest path.

use crate::codec::ChunkWriter;
use crate::store::{Resolution, StoredChunk};

/// Raw rows per chunk: 20 minutes at the default 10 s interval, the size
/// Prometheus found to compress well and still be cheap to rewrite.
pub(crate) const RAW_ROWS: usize = 120;

/// A rollup bucket being summed up.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    start: i64,
    min: f64,
    max: f64,
    sum: f64,
    count: u32,
    last: f64,
}

impl Bucket {
    const EMPTY: Bucket = Bucket { start: i64::MIN, min: f64::INFINITY, max: f64::NEG_INFINITY, sum: 0.0, count: 0, last: 0.0 };

    fn row(&self) -> [f64; 4] {
        [self.min, self.max, self.sum / f64::from(self.count), self.last]
    }
}

/// One resolution's open chunk.
#[derive(Debug, Clone)]
struct Open {
    res: Resolution,
    writer: ChunkWriter,
    /// Rows added since the last flush wrote this chunk.
    dirty: bool,
}

impl Open {
    fn new(res: Resolution) -> Self {
        Open { res, writer: ChunkWriter::new(res.cols()), dirty: false }
    }

    fn stored(&self, series: i64) -> StoredChunk {
        StoredChunk {
            series,
            res: self.res,
            start_ms: self.writer.first_ts(),
            end_ms: self.writer.last_ts(),
            rows: self.writer.len() as u32,
            data: self.writer.bytes(),
        }
    }

    /// Appends a row, first closing the chunk into `closed` when it is full
    /// or the row falls in another window.
    fn append(&mut self, series: i64, ts: i64, values: &[f64], closed: &mut Vec<StoredChunk>) -> bool {
        let window = self.res.window_ms();
        let full = match self.res {
            Resolution::Raw => self.writer.len() >= RAW_ROWS,
            _ => self.writer.is_full(),
        };
        if !self.writer.is_empty()
            && ts > self.writer.last_ts()
            && (full || ts.div_euclid(window) != self.writer.first_ts().div_euclid(window))
        {
            closed.push(self.stored(series));
            self.writer = ChunkWriter::new(self.res.cols());
        }
        let added = self.writer.append(ts, values);
        self.dirty |= added;
        added
    }
}

/// One series' open state.
#[derive(Debug, Clone)]
pub(crate) struct SeriesHead {
    id: i64,
    open: [Open; 3],
    buckets: [Bucket; 2],
}

impl SeriesHead {
    pub(crate) fn new(id: i64) -> Self {
        SeriesHead {
            id,
            open: [Open::new(Resolution::Raw), Open::new(Resolution::Minute), Open::new(Resolution::Hour)],
            buckets: [Bucket::EMPTY; 2],
        }
    }

    /// Adds a sample; false when it is not after the last one (dropped).
    pub(crate) fn append(&mut self, ts: i64, value: f64, closed: &mut Vec<StoredChunk>) -> bool {
        if !self.open[0].append(self.id, ts, &[value], closed) {
            return false;
        }
        // NaN (a stale marker, a failed reading) stays in raw data only.
        if value.is_nan() {
            return true;
        }
        for (i, res) in [Resolution::Minute, Resolution::Hour].into_iter().enumerate() {
            let start = ts - ts.rem_euclid(res.bucket_ms());
            let bucket = &mut self.buckets[i];
            if bucket.start != start {
                if bucket.count > 0 {
                    let (at, row) = (bucket.start, bucket.row());
                    self.open[i + 1].append(self.id, at, &row, closed);
                }
                *bucket = Bucket { start, ..Bucket::EMPTY };
            }
            bucket.min = bucket.min.min(value);
            bucket.max = bucket.max.max(value);
            bucket.sum += value;
            bucket.count += 1;
            bucket.last = value;
        }
        true
    }

    /// The open chunks changed since the last flush (only the raw one
    /// unless `rollups`), marked clean.
    pub(crate) fn take_dirty(&mut self, out: &mut Vec<StoredChunk>, rollups: bool) {
        for open in &mut self.open {
            if open.dirty && !open.writer.is_empty() && (rollups || open.res == Resolution::Raw) {
                out.push(open.stored(self.id));
                open.dirty = false;
            }
        }
    }

    /// A copy of the open chunk at `res`, for queries.
    pub(crate) fn open_chunk(&self, res: Resolution) -> Option<StoredChunk> {
        let open = self.open.iter().find(|o| o.res == res)?;
        (!open.writer.is_empty()).then(|| open.stored(self.id))
    }

    /// Bytes of memory the open chunks hold, roughly.
    pub(crate) fn open_bytes(&self) -> usize {
        self.open.iter().map(|o| o.writer.len() * usize::from(o.res.cols()) * 2).sum::<usize>() + std::mem::size_of::<Self>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::decode;

    #[test]
    fn rollups_summarise_each_minute_and_hour() {
        let mut head = SeriesHead::new(7);
        let mut closed = Vec::new();
        // 0..=359 over the first hour, one sample every 10 s, then one more
        // sample in the next hour to close the last minute and the hour.
        for i in 0..360 {
            assert!(head.append(i * 10_000, i as f64, &mut closed));
        }
        assert!(head.append(3_600_000, 1000.0, &mut closed));
        assert!(!head.append(3_600_000, 1.0, &mut closed), "same timestamp is dropped");
        // Raw chunks closed every 120 rows.
        assert_eq!(closed.iter().filter(|c| c.res == Resolution::Raw).map(|c| c.rows).collect::<Vec<_>>(), vec![120, 120, 120]);
        let minute = head.open_chunk(Resolution::Minute).expect("minute rollups");
        let rows = decode(&minute.data).expect("decodes");
        assert_eq!(rows.len(), 60);
        // Minute 5 holds samples 30..=35.
        assert_eq!(rows[5], (300_000, vec![30.0, 35.0, 32.5, 35.0]));
        let hour = decode(&head.open_chunk(Resolution::Hour).expect("hour rollup").data).expect("decodes");
        assert_eq!(hour, vec![(0, vec![0.0, 359.0, 179.5, 359.0])]);
    }

    #[test]
    fn chunks_close_at_window_edges_and_flush_only_when_changed() {
        let mut head = SeriesHead::new(1);
        let mut closed = Vec::new();
        let edge = Resolution::Raw.window_ms();
        head.append(edge - 10_000, 1.0, &mut closed);
        head.append(edge, 2.0, &mut closed);
        assert_eq!(closed.len(), 1, "the raw chunk closed at the window edge");
        let mut dirty = Vec::new();
        head.take_dirty(&mut dirty, false);
        assert_eq!(dirty.iter().map(|c| c.res).collect::<Vec<_>>(), vec![Resolution::Raw]);
        dirty.clear();
        head.take_dirty(&mut dirty, true);
        assert_eq!(dirty.iter().map(|c| c.res).collect::<Vec<_>>(), vec![Resolution::Minute, Resolution::Hour]);
        dirty.clear();
        head.take_dirty(&mut dirty, true);
        assert!(dirty.is_empty());
    }
}
