//! Worker requests, answered from the current snapshot without any Python. Reads normally never get
//! here: a worker reads the shared images (ATTACH and MAP tell it where they are) and sends GET or TABLES
//! only where it cannot map them (another machine, a process it may not open).
//!
//! Request: `u8 op` then fields, each `u32 length (LE) | bytes`. Reply: `u8 status` then fields.
//! The worker side is `python/slither/_worker/storecodec.py`; the op and status numbers are listed there too.

use super::image::Body;
use super::{Pairs, Store};

pub const GET: u8 = 1;
/// Reply `OK, version` (the version this write created); so do PUT_MANY and RELOAD.
pub const PUT: u8 = 2;
pub const DELETE: u8 = 3;
pub const CAS: u8 = 4;
/// Whole tables, all from one snapshot, copied into the reply (for workers that cannot map the images):
/// fields are table names. Reply per table: `name, version (u64 LE), count (u32 LE), key, value, ...`.
pub const TABLES: u8 = 5;
pub const VERSION: u8 = 6;
/// `table, key, value, key, value, ...` as one write.
pub const PUT_MANY: u8 = 7;
/// `table, key, value, key, value, ...`: the table's new contents.
pub const RELOAD: u8 = 8;
/// `table, count (u32 LE), key, value, ... (count pairs), table, count, ...`: one atomic step.
/// Reply: `OK`, then `name, version` per table.
pub const RELOAD_MANY: u8 = 9;
/// Reply: `OK`, then the table names.
pub const NAMES: u8 = 10;
/// Reply: `OK, pid, fd, length, store id` (u64 LE each): the version header, at `/proc/<pid>/fd/<fd>`.
pub const ATTACH: u8 = 11;
/// Fields: table names (none: every table). Reply: `OK`, then per table, all from one snapshot:
/// `name, slot, version, fd, length, inline` (u64 LE each but the name and inline): its image, either a
/// descriptor in the same process as ATTACH's (and `inline` empty) or, for a small image, `inline` itself
/// (and `fd` u64::MAX).
pub const MAP: u8 = 12;

pub const OK: u8 = 0;
pub const MISSING: u8 = 1;
pub const CONFLICT: u8 = 2;
pub const ERROR: u8 = 255;

fn fields(mut buf: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        if buf.len() < 4 {
            return None;
        }
        let n = u32::from_le_bytes(buf[..4].try_into().ok()?) as usize;
        buf = &buf[4..];
        if buf.len() < n {
            return None;
        }
        out.push(&buf[..n]);
        buf = &buf[n..];
    }
    Some(out)
}

fn push(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_le_bytes());
    out.extend_from_slice(field);
}

fn error(msg: &str) -> Vec<u8> {
    let mut out = vec![ERROR];
    push(&mut out, msg.as_bytes());
    out
}

pub fn no_store_reply() -> Vec<u8> {
    error("this pool has no store: create it with slither.Pool(store=slither.Store())")
}

fn u64_field(out: &mut Vec<u8>, n: u64) {
    push(out, &n.to_le_bytes());
}

fn ok_version(version: u64) -> Vec<u8> {
    let mut out = vec![OK];
    u64_field(&mut out, version);
    out
}

fn pairs(f: &[&[u8]]) -> Pairs {
    f.chunks(2).map(|c| (c[0].to_vec(), c[1].to_vec())).collect()
}

/// RELOAD_MANY's fields: `table, count, pairs...` repeated.
fn tables_of(mut f: &[&[u8]]) -> Result<Vec<(String, Pairs)>, Vec<u8>> {
    let mut out = Vec::new();
    while let [name, count, rest @ ..] = f {
        let n = <[u8; 4]>::try_from(*count).map_err(|_| error("reload_many: a table's count is not 4 bytes"))?;
        let n = u32::from_le_bytes(n) as usize * 2;
        if rest.len() < n {
            return Err(error("reload_many: fewer pairs than counted"));
        }
        out.push((text(name)?.to_string(), pairs(&rest[..n])));
        f = &rest[n..];
    }
    if f.is_empty() {
        Ok(out)
    } else {
        Err(error("reload_many takes table, count and pairs, repeated"))
    }
}

fn text(b: &[u8]) -> Result<&str, Vec<u8>> {
    std::str::from_utf8(b).map_err(|_| error("table name is not UTF-8"))
}

pub fn handle(store: &Store, payload: &[u8]) -> Vec<u8> {
    match try_handle(store, payload) {
        Ok(v) | Err(v) => v,
    }
}

fn try_handle(store: &Store, payload: &[u8]) -> Result<Vec<u8>, Vec<u8>> {
    let (&op, rest) = payload.split_first().ok_or_else(|| error("empty store request"))?;
    let f = fields(rest).ok_or_else(|| error("malformed store request"))?;
    let need = |n: usize| {
        if f.len() == n {
            Ok(())
        } else {
            Err(error(&format!("store op {op} takes {n} fields")))
        }
    };
    let store_err = |e: crate::error::Error| error(&e.to_string());
    match op {
        GET => {
            need(2)?;
            Ok(match store.get(text(f[0])?, f[1]) {
                Some(v) => {
                    let mut out = vec![OK];
                    push(&mut out, &v);
                    out
                }
                None => vec![MISSING],
            })
        }
        PUT => {
            need(3)?;
            let v = store
                .put(text(f[0])?, f[1].to_vec(), f[2].to_vec())
                .map_err(store_err)?;
            Ok(ok_version(v))
        }
        PUT_MANY | RELOAD => {
            if f.is_empty() || f.len() % 2 != 1 {
                return Err(error("put_many and reload take a table and key/value pairs"));
            }
            let (table, pairs) = (text(f[0])?, pairs(&f[1..]));
            let v = if op == PUT_MANY {
                store.put_many(table, pairs)
            } else {
                store.reload(table, pairs)
            };
            Ok(ok_version(v.map_err(store_err)?))
        }
        RELOAD_MANY => {
            let tables = tables_of(&f)?;
            let names: Vec<String> = tables.iter().map(|(n, _)| n.clone()).collect();
            let versions = store.reload_many(tables).map_err(store_err)?;
            let mut out = vec![OK];
            for (name, v) in names.iter().zip(versions) {
                push(&mut out, name.as_bytes());
                u64_field(&mut out, v);
            }
            Ok(out)
        }
        NAMES => {
            let mut out = vec![OK];
            for name in store.snapshot().table_names() {
                push(&mut out, name.as_bytes());
            }
            Ok(out)
        }
        ATTACH => {
            need(0)?;
            let mut out = vec![OK];
            for n in store.attach().map_err(store_err)? {
                u64_field(&mut out, n);
            }
            Ok(out)
        }
        MAP => {
            let names: Vec<String> = f
                .iter()
                .map(|n| text(n).map(str::to_string))
                .collect::<Result<_, _>>()?;
            let mut out = vec![OK];
            for m in store.map_tables(&names).map_err(store_err)? {
                push(&mut out, m.name.as_bytes());
                let (fd, len, inline) = match &m.image.body {
                    Body::Shared(seg) => (seg.fd() as u64, seg.len(), &[][..]),
                    Body::Inline(bytes) => (u64::MAX, bytes.len(), &bytes[..]),
                };
                for n in [m.slot as u64, m.image.version, fd, len as u64] {
                    u64_field(&mut out, n);
                }
                push(&mut out, inline);
            }
            Ok(out)
        }
        DELETE => {
            need(2)?;
            let found = store.delete(text(f[0])?, f[1]).map_err(store_err)?;
            Ok(vec![if found { OK } else { MISSING }])
        }
        CAS => {
            // table, key, expected_present ("0"/"1"), expected, new_present, new
            need(6)?;
            let expected = (f[2] == b"1").then_some(f[3]);
            let new = (f[4] == b"1").then(|| f[5].to_vec());
            let ok = store
                .compare_and_swap(text(f[0])?, f[1], expected, new)
                .map_err(store_err)?;
            Ok(vec![if ok { OK } else { CONFLICT }])
        }
        VERSION => {
            need(1)?;
            Ok(ok_version(store.version(text(f[0])?)))
        }
        TABLES => {
            let snap = store.snapshot();
            let names: Vec<String> = if f.is_empty() {
                snap.table_names()
            } else {
                f.iter()
                    .map(|n| text(n).map(str::to_string))
                    .collect::<Result<_, _>>()?
            };
            let mut out = vec![OK];
            for name in names {
                push(&mut out, name.as_bytes());
                let table = snap.table(&name);
                push(&mut out, &table.map_or(0, |t| t.version).to_le_bytes());
                let count = table.map_or(0, |t| t.entries.size()) as u32;
                push(&mut out, &count.to_le_bytes());
                if let Some(t) = table {
                    for (k, v) in &t.entries {
                        push(&mut out, k);
                        push(&mut out, v);
                    }
                }
            }
            Ok(out)
        }
        _ => Err(error(&format!("unknown store op {op}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(op: u8, fs: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![op];
        for f in fs {
            push(&mut out, f);
        }
        out
    }

    #[test]
    fn get_put_and_errors() {
        let s = Store::new();
        assert_eq!(handle(&s, &req(PUT, &[b"t", b"k", b"v"])), ok_version(1));
        let r = handle(&s, &req(GET, &[b"t", b"k"]));
        assert_eq!(r[0], OK);
        assert_eq!(&r[5..], b"v");
        assert_eq!(handle(&s, &req(GET, &[b"t", b"zz"])), vec![MISSING]);
        assert_eq!(handle(&s, &[])[0], ERROR);
        assert_eq!(handle(&s, &[GET, 9, 0, 0, 0, 1])[0], ERROR);
        assert_eq!(handle(&s, &req(99, &[]))[0], ERROR);
    }

    #[test]
    fn reload_many_returns_each_tables_version_and_rejects_bad_counts() {
        let s = Store::new();
        let one = 1u32.to_le_bytes();
        let zero = 0u32.to_le_bytes();
        let r = handle(&s, &req(RELOAD_MANY, &[b"a", &one, b"k", b"v", b"b", &zero]));
        let mut want = vec![OK];
        push(&mut want, b"a");
        u64_field(&mut want, 1);
        push(&mut want, b"b");
        u64_field(&mut want, 1);
        assert_eq!(r, want);
        assert_eq!(handle(&s, &req(RELOAD_MANY, &[b"a", &one, b"k"]))[0], ERROR);
        assert_eq!(handle(&s, &req(RELOAD_MANY, &[b"a", b"1"]))[0], ERROR);
        assert_eq!(s.version("a"), 1, "a rejected request changes nothing");
        assert_eq!(handle(&s, &req(RELOAD, &[b"a", b"x", b"y"])), ok_version(2));
        assert_eq!(handle(&s, &req(NAMES, &[]))[5..6], *b"a");
    }

    #[test]
    fn map_names_an_image_in_this_process() {
        let s = Store::new();
        s.put("t", b"k".to_vec(), b"v".to_vec()).unwrap();
        let r = handle(&s, &req(ATTACH, &[]));
        assert_eq!(r[0], OK);
        let big: Pairs = (0..5000u32).map(|i| (i.to_le_bytes().to_vec(), vec![0; 16])).collect();
        s.reload("big", big).unwrap();
        let r = handle(&s, &req(MAP, &[b"t", b"big"]));
        assert_eq!(r[0], OK);
        let f = fields(&r[1..]).unwrap();
        let word = |i: usize| u64::from_le_bytes(f[i].try_into().unwrap());
        // A small table travels inline; a large one is a descriptor.
        assert_eq!((f[0], word(1), word(2), word(3)), (&b"t"[..], 0, 1, u64::MAX));
        assert_eq!((f[5].len() as u64, &f[5][..8]), (word(4), &b"SLSTIMG1"[..]));
        assert_eq!((f[6], word(7), word(8)), (&b"big"[..], 1, 1));
        let image = std::fs::read(format!("/proc/self/fd/{}", word(9))).unwrap();
        assert_eq!((image.len() as u64, &image[..8]), (word(10), &b"SLSTIMG1"[..]));
        assert!(f[11].is_empty());
    }
}
