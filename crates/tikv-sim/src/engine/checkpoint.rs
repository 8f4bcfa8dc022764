//! The checkpoint file (`<data-dir>/tikv-sim/checkpoint`) and the same encoding for region
//! snapshots sent to other stores.
//!
//! Layout: a magic line, the length-delimited [`Meta`] (prost), then the pairs as
//! `u32 key length, key, u32 value length, value` (little endian), then `u32::MAX` and the pair
//! count as `u64`, so a truncated file is detected. Checkpoints are written to a temporary file,
//! fsynced and renamed over the old one (then the directory is fsynced): a crash leaves the old
//! or the new checkpoint, never a torn one.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use pdclient::proto::metapb;
use prost::Message;

const MAGIC: &[u8] = b"tikv-sim checkpoint 1\n";
const END: u32 = u32::MAX;

/// One region replica as of its applied index.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RegionState {
    /// Range, epoch and peers.
    #[prost(message, optional, tag = "1")]
    pub region: Option<metapb::Region>,
    /// This store's peer in the region.
    #[prost(uint64, tag = "2")]
    pub peer_id: u64,
    /// The last raft log index reflected in the data.
    #[prost(uint64, tag = "3")]
    pub applied_index: u64,
    /// The term of that entry.
    #[prost(uint64, tag = "4")]
    pub applied_term: u64,
}

/// A replica this store destroyed: messages for it from older epochs are dropped.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Tombstone {
    /// The region.
    #[prost(uint64, tag = "1")]
    pub region_id: u64,
    /// Its epoch when the replica was destroyed.
    #[prost(message, optional, tag = "2")]
    pub epoch: Option<metapb::RegionEpoch>,
}

/// Everything but the pairs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Meta {
    /// Replicas (for a region snapshot: exactly one).
    #[prost(message, repeated, tag = "1")]
    pub regions: Vec<RegionState>,
    /// Destroyed replicas.
    #[prost(message, repeated, tag = "2")]
    pub tombstones: Vec<Tombstone>,
}

/// A checkpoint or snapshot that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The content is not a checkpoint.
    #[error("{path} is corrupt: {reason}")]
    Corrupt {
        /// The file (empty for a snapshot received over the network).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Pairs as decoded.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Writes `meta` and `pairs` to `w`.
pub fn encode<'a>(
    w: &mut impl Write,
    meta: &Meta,
    pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> io::Result<()> {
    w.write_all(MAGIC)?;
    w.write_all(&meta.encode_length_delimited_to_vec())?;
    let mut count = 0u64;
    for (k, v) in pairs {
        for part in [k, v] {
            let len = u32::try_from(part.len())
                .ok()
                .filter(|&l| l != END)
                .ok_or_else(|| io::Error::other("key or value larger than 4 GiB"))?;
            w.write_all(&len.to_le_bytes())?;
            w.write_all(part)?;
        }
        count += 1;
    }
    w.write_all(&END.to_le_bytes())?;
    w.write_all(&count.to_le_bytes())
}

/// Reads what [`encode`] wrote.
pub fn decode(r: &mut impl Read, path: &Path) -> Result<(Meta, Pairs), CheckpointError> {
    let corrupt = |reason: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let io_err = |source| CheckpointError::Io {
        what: "cannot read",
        path: path.to_path_buf(),
        source,
    };
    let mut magic = vec![0; MAGIC.len()];
    r.read_exact(&mut magic).map_err(io_err)?;
    if magic != MAGIC {
        return Err(corrupt("not a tikv-sim checkpoint".into()));
    }
    let meta_len = read_varint(r).map_err(io_err)?;
    let mut meta = vec![0; meta_len as usize];
    r.read_exact(&mut meta).map_err(io_err)?;
    let meta = Meta::decode(meta.as_slice()).map_err(|e| corrupt(e.to_string()))?;
    let mut pairs = Vec::new();
    let read_u32 = |r: &mut dyn Read| -> io::Result<u32> {
        let mut b = [0; 4];
        r.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    };
    loop {
        let klen = read_u32(r).map_err(io_err)?;
        if klen == END {
            break;
        }
        let mut k = vec![0; klen as usize];
        r.read_exact(&mut k).map_err(io_err)?;
        let vlen = read_u32(r).map_err(io_err)?;
        let mut v = vec![0; vlen as usize];
        r.read_exact(&mut v).map_err(io_err)?;
        pairs.push((k, v));
    }
    let mut count = [0; 8];
    r.read_exact(&mut count).map_err(io_err)?;
    if u64::from_le_bytes(count) != pairs.len() as u64 {
        return Err(corrupt("pair count does not match".into()));
    }
    Ok((meta, pairs))
}

/// Only the metadata of what [`encode`] wrote (a snapshot's region, before it is accepted).
pub fn decode_meta(mut data: &[u8]) -> Result<Meta, CheckpointError> {
    let corrupt = |reason: String| CheckpointError::Corrupt {
        path: PathBuf::new(),
        reason,
    };
    if !data.starts_with(MAGIC) {
        return Err(corrupt("not a tikv-sim snapshot".into()));
    }
    data = &data[MAGIC.len()..];
    Meta::decode_length_delimited(data).map_err(|e| corrupt(e.to_string()))
}

fn read_varint(r: &mut impl Read) -> io::Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let mut b = [0u8; 1];
        r.read_exact(&mut b)?;
        value |= u64::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(io::Error::other("varint too long"))
}

/// Replaces the checkpoint at `path` with `meta` and `pairs`, durably.
pub fn save<'a>(
    path: &Path,
    meta: &Meta,
    pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<(), CheckpointError> {
    let tmp = path.with_extension("tmp");
    let err = |what, p: &Path| {
        let p = p.to_path_buf();
        move |source| CheckpointError::Io {
            what,
            path: p,
            source,
        }
    };
    let file = File::create(&tmp).map_err(err("cannot create", &tmp))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    encode(&mut w, meta, pairs).map_err(err("cannot write", &tmp))?;
    let file = w
        .into_inner()
        .map_err(|e| err("cannot write", &tmp)(e.into_error()))?;
    file.sync_all().map_err(err("cannot sync", &tmp))?;
    fs::rename(&tmp, path).map_err(err("cannot rename to", path))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err("cannot sync", dir))?;
    }
    Ok(())
}

/// The checkpoint at `path`, or `None` if there is none yet.
pub fn load(path: &Path) -> Result<Option<(Meta, Pairs)>, CheckpointError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CheckpointError::Io {
                what: "cannot open",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    decode(&mut BufReader::with_capacity(1 << 20, file), path).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            regions: vec![RegionState {
                region: Some(metapb::Region {
                    id: 2,
                    ..Default::default()
                }),
                peer_id: 3,
                applied_index: 9,
                applied_term: 6,
            }],
            tombstones: vec![Tombstone {
                region_id: 7,
                epoch: None,
            }],
        }
    }

    #[test]
    fn round_trip_and_truncation_is_detected() {
        let pairs: Pairs = vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), Vec::new())];
        let mut buf = Vec::new();
        encode(
            &mut buf,
            &meta(),
            pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
        )
        .unwrap();
        let (m, p) = decode(&mut buf.as_slice(), Path::new("x")).unwrap();
        assert_eq!((m, p), (meta(), pairs));
        let cut = &buf[..buf.len() - 3];
        assert!(decode(&mut &cut[..], Path::new("x")).is_err());
    }

    #[test]
    fn save_replaces_and_load_reads() {
        let dir = std::env::temp_dir().join(format!("tikv-sim-ckpt-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("checkpoint");
        assert!(load(&path).unwrap().is_none());
        save(&path, &meta(), std::iter::empty()).unwrap();
        save(
            &path,
            &Meta::default(),
            [(&b"k"[..], &b"v"[..])].into_iter(),
        )
        .unwrap();
        let (m, p) = load(&path).unwrap().unwrap();
        assert_eq!(m, Meta::default());
        assert_eq!(p, vec![(b"k".to_vec(), b"v".to_vec())]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
