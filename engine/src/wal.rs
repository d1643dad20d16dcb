//! The write-ahead log of a table's small appends.
//!
//! A one-row INSERT committed as its own Lance version costs a data file, a
//! manifest, a transaction file and a sync of the disk, and the next search a
//! new version to open; an application sending statements one row at a time
//! pays that per row. Instead, an append of a few rows is written to this log
//! as one record, synced (one `fdatasync` shared by every append waiting at
//! that moment: group commit), and acknowledged; its rows are searched from
//! memory (the table's tail, see [`crate::table`]) until a flush writes the
//! tail to Lance as one version, in one fragment.
//!
//! On disk: `<data_dir>/wal/<table folder>/<first lsn, 20 digits>.wal`, one
//! segment file at a time being appended to. A record is
//! `[payload length u32 LE][crc32 of lsn and payload u32 LE][lsn u64 LE][payload]`,
//! the payload one Arrow IPC stream (the batch and its schema). Log sequence
//! numbers (lsn) increase by one per record, across segments and restarts.
//! The file is extended with zeros ahead of its records, [`EXTEND_BYTES`] at
//! a time, as PostgreSQL fills its WAL segments before use: a record then
//! overwrites blocks the file already has, and its sync writes the data
//! only, where a sync after an append must also commit the file's new size
//! (on ext4 a journal commit per statement). Reading stops at the first
//! record that is not whole and intact; zeros after the last one are the
//! unused rest of the file, anything else a write a crash interrupted.
//!
//! A flush starts a new segment (the old one synced first), so every record
//! it writes to Lance is in a closed segment; it commits those rows with the
//! transaction property [`FLUSHED_LSN`] = the last lsn it holds, and then
//! removes the closed segments. A crash between the commit and the removal
//! leaves records that Lance already has: start-up finds the property on the
//! latest commits and replays only the records after it.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;

use crate::engine_err;
use crate::error::Result;

/// The Lance transaction property naming the last lsn a flush wrote.
pub const FLUSHED_LSN: &str = "quiver.wal_flushed_lsn";

const HEADER: usize = 16;

/// A segment's file is extended by at least this many bytes of zeros when a
/// record would pass its end.
pub const EXTEND_BYTES: u64 = 256 << 10;

/// Zeros written at a time when a segment is extended or a write undone.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
/// A record larger than this is not one this log wrote (a torn length).
const MAX_RECORD: usize = 1 << 30;

/// One record read back.
#[derive(Debug)]
pub struct Record {
    pub lsn: u64,
    pub batch: RecordBatch,
}

/// A record's bytes: header and payload.
pub fn encode(lsn: u64, batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut payload = Vec::with_capacity(batch.get_array_memory_size() + 512);
    {
        let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut payload, &batch.schema())?;
        w.write(batch)?;
        w.finish()?;
    }
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(lsn, &payload).to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

fn checksum(lsn: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&lsn.to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn decode_batch(payload: &[u8]) -> Result<RecordBatch> {
    let mut r = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(payload), None)?;
    match r.next() {
        Some(b) => Ok(b?),
        None => engine_err!(Internal, "a log record holds no batch"),
    }
}

/// The records of one segment, the length of its intact prefix (a record cut
/// short or failing its checksum ends it), and whether anything but zeros
/// follows it (a write a crash interrupted).
pub fn read_segment(path: &Path) -> Result<(Vec<Record>, u64, bool)> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let mut records = Vec::new();
    let mut at = 0usize;
    while bytes.len() - at >= HEADER {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap_or_default());
        let lsn = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap_or_default());
        let end = at + HEADER + len;
        if len > MAX_RECORD || end > bytes.len() {
            break;
        }
        let payload = &bytes[at + HEADER..end];
        if checksum(lsn, payload) != crc {
            break;
        }
        records.push(Record {
            lsn,
            batch: decode_batch(payload)?,
        });
        at = end;
    }
    let torn = bytes[at..].iter().any(|b| *b != 0);
    Ok((records, at as u64, torn))
}

/// The segment files of a log folder, by first lsn.
pub fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for e in entries {
        let e = e?;
        let name = e.file_name();
        let Some(first) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((first, e.path()));
    }
    out.sort();
    Ok(out)
}

pub fn segment_path(dir: &Path, first_lsn: u64) -> PathBuf {
    dir.join(format!("{first_lsn:020}.wal"))
}

/// Makes a folder's entries (files created, renamed or removed) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// The segment being appended to.
#[derive(Debug)]
pub struct Segment {
    pub first_lsn: u64,
    path: PathBuf,
    file: File,
    /// Bytes of intact records, and how many records.
    len: u64,
    records: usize,
    /// The file's length: records, then zeros.
    extended: u64,
}

impl Segment {
    /// Creates an empty segment whose first record will be `first_lsn`
    /// (durably, with `sync`: the folder entry too).
    pub fn create(dir: &Path, first_lsn: u64, sync: bool) -> Result<Segment> {
        std::fs::create_dir_all(dir)?;
        let path = segment_path(dir, first_lsn);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        write_zeros(&file, 0, EXTEND_BYTES)?;
        if sync {
            file.sync_all()?;
            sync_dir(dir)?;
            // The folder itself may be new.
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        Ok(Segment {
            first_lsn,
            path,
            file,
            len: 0,
            records: 0,
            extended: EXTEND_BYTES,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many records the segment holds.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Appends one encoded record (to the page cache: [`Segment::sync_handle`]
    /// makes it durable), after the intact ones, extending the file with
    /// zeros first when it would pass its end. A write that fails is zeroed
    /// again, since a record cut short would end the segment at recovery and
    /// hide every later one; `Err((e, false))` when even that failed (the
    /// segment must not be written to again).
    pub fn write(&mut self, record: &[u8]) -> std::result::Result<(), (std::io::Error, bool)> {
        use std::os::unix::fs::FileExt;
        let end = self.len + record.len() as u64;
        if end > self.extended {
            let to = end.max(self.extended.saturating_mul(2)) + EXTEND_BYTES;
            // Zeros only: a failure leaves nothing to undo.
            write_zeros(&self.file, self.extended, to).map_err(|e| (e, true))?;
            self.extended = to;
        }
        if let Err(e) = self.file.write_all_at(record, self.len) {
            let undone = write_zeros(&self.file, self.len, end).is_ok();
            return Err((e, undone));
        }
        self.len = end;
        self.records += 1;
        Ok(())
    }

    /// A second handle on the file, to sync it without holding the segment.
    pub fn sync_handle(&self) -> Result<File> {
        Ok(self.file.try_clone()?)
    }

    pub fn sync(&self) -> Result<()> {
        self.file.sync_data()?;
        Ok(())
    }
}

/// Writes zeros over `from..to` of `file`.
fn write_zeros(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZEROS.len() as u64) as usize;
        file.write_all_at(&ZEROS[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Cuts a segment back to its intact prefix (after a torn final write).
pub fn truncate(path: &Path, len: u64) -> Result<()> {
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(len)?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch(ids: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("t", DataType::Utf8, true),
        ]));
        let texts: Vec<String> = ids.iter().map(|i| format!("row {i}")).collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(texts)),
            ],
        )
        .expect("wal test")
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("quiver-wal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn records_read_back_and_a_torn_tail_ends_the_segment() {
        let dir = temp_dir("torn");
        let mut s = Segment::create(&dir, 7, true).expect("wal test");
        s.write(&encode(7, &batch(&[1, 2])).expect("wal test"))
            .expect("wal test");
        s.write(&encode(8, &batch(&[3])).expect("wal test"))
            .expect("wal test");
        let third = encode(9, &batch(&[4, 5, 6])).expect("wal test");
        // A crash in the middle of the third record's write.
        s.write(&third[..third.len() - 5]).expect("wal test");
        s.sync().expect("wal test");
        let path = segment_path(&dir, 7);
        let (records, intact, torn) = read_segment(&path).expect("wal test");
        assert_eq!(records.iter().map(|r| r.lsn).collect::<Vec<_>>(), [7, 8]);
        assert_eq!(records[0].batch, batch(&[1, 2]));
        assert_eq!(records[1].batch, batch(&[3]));
        let two = encode(7, &batch(&[1, 2])).expect("wal test").len()
            + encode(8, &batch(&[3])).expect("wal test").len();
        assert_eq!(intact, two as u64);
        assert!(torn, "the cut record is not zeros");

        // A flipped byte fails the checksum: the record and what follows are not read.
        truncate(&path, intact).expect("wal test");
        let mut bytes = std::fs::read(&path).expect("wal test");
        let second_start = encode(7, &batch(&[1, 2])).expect("wal test").len();
        bytes[second_start + HEADER + 3] ^= 0xff;
        std::fs::write(&path, &bytes).expect("wal test");
        let (records, intact, torn) = read_segment(&path).expect("wal test");
        assert_eq!(records.len(), 1);
        assert_eq!(intact, second_start as u64);
        assert!(torn);

        assert_eq!(segments(&dir).expect("wal test"), vec![(7, path)]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Records overwrite zeros the file already has, past its first extension
    /// too; what follows the last record is zeros, not a torn write.
    #[test]
    fn records_fill_a_file_extended_with_zeros() {
        let dir = temp_dir("extend");
        let mut s = Segment::create(&dir, 1, true).expect("wal test");
        let path = segment_path(&dir, 1);
        assert_eq!(
            std::fs::metadata(&path).expect("wal test").len(),
            EXTEND_BYTES
        );
        // Records of about 40 KB: the file is extended past its first 256 KiB.
        let ids: Vec<i64> = (0..2_000).collect();
        let mut lens = 0;
        for lsn in 1..=10 {
            let r = encode(lsn, &batch(&ids)).expect("wal test");
            lens += r.len() as u64;
            s.write(&r).expect("wal test");
        }
        s.sync().expect("wal test");
        let file_len = std::fs::metadata(&path).expect("wal test").len();
        assert!(
            file_len > EXTEND_BYTES && file_len > lens,
            "{file_len} for {lens}"
        );
        let (records, intact, torn) = read_segment(&path).expect("wal test");
        assert_eq!(
            records.iter().map(|r| r.lsn).collect::<Vec<_>>(),
            (1..=10).collect::<Vec<_>>()
        );
        assert_eq!(intact, lens);
        assert!(!torn, "zeros after the last record read as a torn write");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
