//! Reading committed frames out of a write-ahead log, for replication.
//!
//! SQLite's WAL file is a 32-byte header then frames (a 24-byte header and
//! one page each). A frame belongs to the current log only if it carries
//! the header's salts and its checksum continues the chain from the
//! previous frame; a frame whose "database size" field is not zero ends a
//! transaction. Frames past the last such commit frame belong to a
//! transaction that is open or was rolled back, and frames past a broken
//! chain are left over from a longer log before a restart: neither is
//! read. See <https://sqlite.org/fileformat2.html#walformat>.

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;

const HEADER: usize = 32;
const FRAME_HEADER: usize = 24;
/// The header's magic number; its lowest bit says the checksums read the
/// content as big-endian words.
const MAGIC: u32 = 0x377f_0682;

/// Where reading stopped in one log: the next frame's offset and the
/// chain to continue from.
#[derive(Debug, Clone, Default)]
pub struct WalCursor {
    /// Offset of the first frame not yet read; 0 when the log has not been
    /// read since it was (re)started.
    offset: u64,
    salts: [u8; 8],
    checksum: (u32, u32),
    big_endian: bool,
    page_size: usize,
}

/// The pages of the transactions committed since the cursor, each page at
/// its latest version.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Committed {
    pub page_size: u32,
    /// The database's size in pages after the last of them.
    pub database_pages: u32,
    /// Page number (from 1) to content.
    pub pages: BTreeMap<u32, Vec<u8>>,
}

impl WalCursor {
    /// Reads from the start of the log again (after a checkpoint emptied
    /// it).
    pub fn reset(&mut self) {
        *self = WalCursor::default();
    }

    /// The committed transactions after the cursor in the log at `wal`,
    /// and moves past them; `None` when there are none.
    pub fn read_committed(&mut self, wal: &Path) -> std::io::Result<Option<Committed>> {
        let mut file = match std::fs::File::open(wal) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let mut header = [0u8; HEADER];
        match file.read_exact(&mut header) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(error) => return Err(error),
        }
        if self.offset == 0 || header[16..24] != self.salts {
            // A new log (or one restarted since): begin at its first frame.
            let Some(start) = Self::start(&header) else {
                return Ok(None);
            };
            *self = start;
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut rest = Vec::new();
        file.read_to_end(&mut rest)?;
        Ok(self.take_frames(&rest))
    }

    /// A cursor at the first frame of the log whose header this is, if
    /// the header is valid.
    fn start(header: &[u8; HEADER]) -> Option<WalCursor> {
        let magic = be32(&header[0..4]);
        if magic & !1 != MAGIC {
            return None;
        }
        let big_endian = magic & 1 == 1;
        let page_size = be32(&header[8..12]) as usize;
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return None;
        }
        let checksum = checksum(big_endian, (0, 0), &header[..24]);
        if checksum != (be32(&header[24..28]), be32(&header[28..32])) {
            return None;
        }
        let mut salts = [0u8; 8];
        salts.copy_from_slice(&header[16..24]);
        Some(WalCursor {
            offset: HEADER as u64,
            salts,
            checksum,
            big_endian,
            page_size,
        })
    }

    /// Takes the frames of whole committed transactions from `bytes` (the
    /// log from the cursor on).
    fn take_frames(&mut self, bytes: &[u8]) -> Option<Committed> {
        let frame_len = FRAME_HEADER + self.page_size;
        let mut pending: Vec<(u32, &[u8])> = Vec::new();
        let mut committed = Committed {
            page_size: self.page_size as u32,
            ..Committed::default()
        };
        let mut chain = self.checksum;
        let (mut position, mut consumed) = (0, 0);
        while position + frame_len <= bytes.len() {
            let frame = &bytes[position..position + frame_len];
            if frame[8..16] != self.salts {
                break;
            }
            let sum = checksum(self.big_endian, chain, &frame[..8]);
            let sum = checksum(self.big_endian, sum, &frame[FRAME_HEADER..]);
            if sum != (be32(&frame[16..20]), be32(&frame[20..24])) {
                break;
            }
            chain = sum;
            position += frame_len;
            pending.push((be32(&frame[0..4]), &frame[FRAME_HEADER..]));
            let database_pages = be32(&frame[4..8]);
            if database_pages != 0 {
                // A commit frame: its transaction's frames are taken.
                for (page, content) in pending.drain(..) {
                    committed.pages.insert(page, content.to_vec());
                }
                committed.database_pages = database_pages;
                self.checksum = chain;
                consumed = position;
            }
        }
        if consumed == 0 {
            return None;
        }
        self.offset += consumed as u64;
        // A page beyond the final size is no longer part of the database.
        let size = committed.database_pages;
        committed.pages.retain(|page, _| *page <= size);
        Some(committed)
    }
}

fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing
/// from `(s0, s1)`.
fn checksum(big_endian: bool, (mut s0, mut s1): (u32, u32), data: &[u8]) -> (u32, u32) {
    for pair in data.chunks_exact(8) {
        let word = |b: &[u8]| {
            let b = [b[0], b[1], b[2], b[3]];
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        s0 = s0.wrapping_add(word(&pair[0..4]).wrapping_add(s1));
        s1 = s1.wrapping_add(word(&pair[4..8]).wrapping_add(s0));
    }
    (s0, s1)
}
