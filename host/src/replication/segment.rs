//! The objects replication writes: segments (the pages of one or more
//! commits) and snapshots (a whole database), and their names.
//!
//! Both start with the same 56-byte header, big-endian:
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..8 | magic: `PODHSEG1` (segment) or `PODHSNP1` (snapshot) |
//! | 8..12 | format version (1) |
//! | 12..16 | page size |
//! | 16..24 | fencing epoch (0 on one node; the owner's epoch with several) |
//! | 24..32 | first transaction id (a snapshot: its transaction id) |
//! | 32..40 | last transaction id (a snapshot: the same) |
//! | 40..48 | commit time of the last transaction (a snapshot: when taken), ms since the Unix epoch |
//! | 48..52 | database size in pages after the last transaction |
//! | 52..56 | pages that follow (a snapshot: the same as its size) |
//!
//! Then a segment has, per page, its number (4 bytes) and content; a
//! snapshot has the database file. The last 32 bytes are the SHA-256 of
//! everything before them.
//!
//! Names, under the store's prefix: `<class>/<object id>/<generation>/`
//! then `<txid:016x>.snap` or `<first:016x>-<last:016x>.seg`, so a listing
//! is an object's history in order. A generation (`<ms:016x><random:08x>`,
//! so generations sort by when they began) starts with a snapshot, and its
//! segments follow without a gap. Beside them, `name` holds the object's
//! name (its id is a hash of class and name), for rebuilding a whole data
//! directory.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

/// Beside a generation's snapshot: the object's name, as UTF-8.
pub const NAME_FILE: &str = "name";

const SEGMENT_MAGIC: &[u8; 8] = b"PODHSEG1";
const SNAPSHOT_MAGIC: &[u8; 8] = b"PODHSNP1";
const FORMAT_VERSION: u32 = 1;
pub const HEADER: usize = 56;
const DIGEST: usize = 32;

/// What a segment or snapshot says of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub snapshot: bool,
    pub page_size: u32,
    pub epoch: u64,
    pub first_txid: u64,
    pub last_txid: u64,
    pub committed_ms: i64,
    pub database_pages: u32,
}

/// A decoded segment or snapshot.
#[derive(Debug)]
pub struct Piece {
    pub header: Header,
    /// A segment's pages by number; a snapshot's file as page 0.
    pub pages: BTreeMap<u32, Vec<u8>>,
    /// A snapshot's database file.
    pub file: Vec<u8>,
}

/// Why a stored piece cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Corrupt {
    #[error("it is too short to be a segment or snapshot")]
    Short,
    #[error("it does not start with a podhost segment or snapshot header")]
    Magic,
    #[error("its format version {0} is not one this podhost reads")]
    Version(u32),
    #[error("its checksum does not match its content")]
    Checksum,
    #[error("its content does not match its header: {0}")]
    Inconsistent(&'static str),
}

fn header_bytes(header: &Header, pages: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER);
    out.extend_from_slice(if header.snapshot {
        SNAPSHOT_MAGIC
    } else {
        SEGMENT_MAGIC
    });
    out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    out.extend_from_slice(&header.page_size.to_be_bytes());
    out.extend_from_slice(&header.epoch.to_be_bytes());
    out.extend_from_slice(&header.first_txid.to_be_bytes());
    out.extend_from_slice(&header.last_txid.to_be_bytes());
    out.extend_from_slice(&header.committed_ms.to_be_bytes());
    out.extend_from_slice(&header.database_pages.to_be_bytes());
    out.extend_from_slice(&pages.to_be_bytes());
    out
}

fn seal(mut out: Vec<u8>) -> Vec<u8> {
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

/// A segment of `pages` (number to content) ending at `header.last_txid`.
pub fn encode_segment(header: &Header, pages: &BTreeMap<u32, Vec<u8>>) -> Vec<u8> {
    let page_size = header.page_size as usize;
    let mut out = header_bytes(header, pages.len() as u32);
    out.reserve(pages.len() * (4 + page_size) + DIGEST);
    for (number, content) in pages {
        out.extend_from_slice(&number.to_be_bytes());
        out.extend_from_slice(content);
    }
    seal(out)
}

/// A snapshot of the database file `file`.
pub fn encode_snapshot(header: &Header, file: &[u8]) -> Vec<u8> {
    let mut out = header_bytes(header, header.database_pages);
    out.reserve(file.len() + DIGEST);
    out.extend_from_slice(file);
    seal(out)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(b)
}

/// The fencing epoch in the first bytes of a stored segment or snapshot
/// (at least 24 of them), if they start like one.
pub fn header_epoch(head: &[u8]) -> Option<u64> {
    let magic = head.get(0..8)?;
    (magic == SEGMENT_MAGIC || magic == SNAPSHOT_MAGIC)
        .then(|| head.get(16..24).map(|_| u64_at(head, 16)))
        .flatten()
}

/// Checks and decodes a stored segment or snapshot.
pub fn decode(bytes: &[u8]) -> Result<Piece, Corrupt> {
    if bytes.len() < HEADER + DIGEST {
        return Err(Corrupt::Short);
    }
    let (body, digest) = bytes.split_at(bytes.len() - DIGEST);
    let snapshot = match &body[0..8] {
        magic if magic == SEGMENT_MAGIC => false,
        magic if magic == SNAPSHOT_MAGIC => true,
        _ => return Err(Corrupt::Magic),
    };
    let version = u32_at(body, 8);
    if version != FORMAT_VERSION {
        return Err(Corrupt::Version(version));
    }
    if Sha256::digest(body).as_slice() != digest {
        return Err(Corrupt::Checksum);
    }
    let header = Header {
        snapshot,
        page_size: u32_at(body, 12),
        epoch: u64_at(body, 16),
        first_txid: u64_at(body, 24),
        last_txid: u64_at(body, 32),
        committed_ms: u64_at(body, 40) as i64,
        database_pages: u32_at(body, 48),
    };
    let count = u32_at(body, 52) as usize;
    let page_size = header.page_size as usize;
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(Corrupt::Inconsistent("page size"));
    }
    let content = &body[HEADER..];
    if snapshot {
        if content.len() != count * page_size {
            return Err(Corrupt::Inconsistent("snapshot length"));
        }
        return Ok(Piece {
            header,
            pages: BTreeMap::new(),
            file: content.to_vec(),
        });
    }
    if content.len() != count * (4 + page_size) {
        return Err(Corrupt::Inconsistent("segment length"));
    }
    let mut pages = BTreeMap::new();
    for chunk in content.chunks_exact(4 + page_size) {
        let number = u32_at(chunk, 0);
        if number == 0 || number > header.database_pages {
            return Err(Corrupt::Inconsistent("page number"));
        }
        pages.insert(number, chunk[4..].to_vec());
    }
    Ok(Piece {
        header,
        pages,
        file: Vec::new(),
    })
}

/// One stored piece, as its name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    Snapshot { txid: u64 },
    Segment { first: u64, last: u64 },
}

/// `<txid:016x>.snap` or `<first:016x>-<last:016x>.seg`.
pub fn file_name(named: &Named) -> String {
    match named {
        Named::Snapshot { txid } => format!("{txid:016x}.snap"),
        Named::Segment { first, last } => format!("{first:016x}-{last:016x}.seg"),
    }
}

/// The inverse of [`file_name`].
pub fn parse_file_name(name: &str) -> Option<Named> {
    let hex = |s: &str| (s.len() == 16).then(|| u64::from_str_radix(s, 16).ok())?;
    if let Some(txid) = name.strip_suffix(".snap") {
        return Some(Named::Snapshot { txid: hex(txid)? });
    }
    let range = name.strip_suffix(".seg")?;
    let (first, last) = range.split_once('-')?;
    Some(Named::Segment {
        first: hex(first)?,
        last: hex(last)?,
    })
}

/// A new generation's name: when it began, then random bits.
pub fn new_generation(now_ms: i64) -> String {
    let mut random = [0u8; 4];
    let _ = getrandom::fill(&mut random);
    format!("{:016x}{}", now_ms.max(0), hex::encode(random))
}

/// When a generation began (ms since the Unix epoch), if `name` is one.
pub fn generation_start(name: &str) -> Option<i64> {
    if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    i64::from_str_radix(&name[..16], 16).ok()
}

/// What a file of a store's listing is to an object's history.
#[derive(Debug, PartialEq, Eq)]
pub enum Stored {
    /// A file of generation `generation` (which began at `start`, ms) of
    /// object `id` of `class`: a snapshot, a segment or the name file.
    Generation {
        class: String,
        id: String,
        generation: String,
        start: i64,
    },
    /// Object `id` of `class` was deleted (`tombstone` holds when).
    Tombstone { class: String, id: String },
    /// Anything else (a legacy or foreign file).
    Other,
}

impl Stored {
    /// `location`'s part in a history, from its path.
    pub fn of(location: &object_store::path::Path) -> Stored {
        let parts: Vec<String> = location
            .parts()
            .map(|part| part.as_ref().to_string())
            .collect();
        match parts.as_slice() {
            [class, id, generation, _] => match generation_start(generation) {
                Some(start) => Stored::Generation {
                    class: class.clone(),
                    id: id.clone(),
                    generation: generation.clone(),
                    start,
                },
                None => Stored::Other,
            },
            [class, id, file] if file == super::retention::TOMBSTONE => Stored::Tombstone {
                class: class.clone(),
                id: id.clone(),
            },
            _ => Stored::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_paths_are_told_apart() {
        let of = |path: &str| Stored::of(&object_store::path::Path::from(path));
        assert_eq!(
            of("c/i/0000019a00000000deadbeef/0000000000000001.snap"),
            Stored::Generation {
                class: "c".into(),
                id: "i".into(),
                generation: "0000019a00000000deadbeef".into(),
                start: 0x19a_0000_0000,
            }
        );
        assert_eq!(
            of("c/i/deleted"),
            Stored::Tombstone {
                class: "c".into(),
                id: "i".into()
            }
        );
        assert_eq!(of("c/i/not-a-generation/x.seg"), Stored::Other);
        assert_eq!(of("_catalog/12.snap"), Stored::Other);
    }

    fn header(snapshot: bool) -> Header {
        Header {
            snapshot,
            page_size: 512,
            epoch: 0,
            first_txid: 3,
            last_txid: 4,
            committed_ms: 1_700_000_000_000,
            database_pages: 2,
        }
    }

    #[test]
    fn a_segment_round_trips_and_any_flipped_byte_is_caught() {
        let pages = BTreeMap::from([(1, vec![7u8; 512]), (2, vec![9u8; 512])]);
        let bytes = encode_segment(&header(false), &pages);
        let piece = decode(&bytes).expect("decodes");
        assert_eq!(piece.header, header(false));
        assert_eq!(piece.pages, pages);
        for at in [0, 20, HEADER + 3, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert!(decode(&bad).is_err(), "a flip at {at} is caught");
        }
        assert!(matches!(decode(&bytes[..40]), Err(Corrupt::Short)));
    }

    #[test]
    fn a_snapshot_round_trips() {
        let file = vec![5u8; 1024];
        let piece = decode(&encode_snapshot(&header(true), &file)).expect("decodes");
        assert!(piece.header.snapshot);
        assert_eq!(piece.file, file);
    }

    #[test]
    fn names_sort_as_history_and_parse_back() {
        let names = [
            file_name(&Named::Snapshot { txid: 9 }),
            file_name(&Named::Segment {
                first: 10,
                last: 10,
            }),
            file_name(&Named::Segment {
                first: 11,
                last: 300,
            }),
        ];
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, names);
        assert_eq!(
            parse_file_name(&names[2]),
            Some(Named::Segment {
                first: 11,
                last: 300
            })
        );
        assert_eq!(parse_file_name("x.seg"), None);
        let generation = new_generation(1234);
        assert_eq!(generation_start(&generation), Some(1234));
        assert!(new_generation(1) < new_generation(2));
    }
}
