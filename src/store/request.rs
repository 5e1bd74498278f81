//! Worker requests, answered from the current snapshot without any Python.
//!
//! Request: `u8 op` then fields, each `u32 length (LE) | bytes`. Reply: `u8 status` then fields.
//! The worker side is `python/slither/_worker/storecodec.py`; the op and status numbers are listed there too.

use super::Store;

pub const GET: u8 = 1;
pub const PUT: u8 = 2;
pub const DELETE: u8 = 3;
pub const CAS: u8 = 4;
/// Whole tables, all from one snapshot: fields are table names. Reply per table:
/// `name, version (u64 LE), count (u32 LE), key, value, key, value, ...`.
pub const TABLES: u8 = 5;
pub const VERSION: u8 = 6;
/// `table, key, value, key, value, ...` as one write.
pub const PUT_MANY: u8 = 7;

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
            store
                .put(text(f[0])?, f[1].to_vec(), f[2].to_vec())
                .map_err(store_err)?;
            Ok(vec![OK])
        }
        PUT_MANY => {
            if f.is_empty() || f.len() % 2 != 1 {
                return Err(error("put_many takes a table and key/value pairs"));
            }
            let pairs = f[1..].chunks(2).map(|c| (c[0].to_vec(), c[1].to_vec())).collect();
            store.put_many(text(f[0])?, pairs).map_err(store_err)?;
            Ok(vec![OK])
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
            let mut out = vec![OK];
            push(&mut out, &store.version(text(f[0])?).to_le_bytes());
            Ok(out)
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
                let count = table.map_or(0, |t| t.entries.len()) as u32;
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
        assert_eq!(handle(&s, &req(PUT, &[b"t", b"k", b"v"])), vec![OK]);
        let r = handle(&s, &req(GET, &[b"t", b"k"]));
        assert_eq!(r[0], OK);
        assert_eq!(&r[5..], b"v");
        assert_eq!(handle(&s, &req(GET, &[b"t", b"zz"])), vec![MISSING]);
        assert_eq!(handle(&s, &[])[0], ERROR);
        assert_eq!(handle(&s, &[GET, 9, 0, 0, 0, 1])[0], ERROR);
        assert_eq!(handle(&s, &req(99, &[]))[0], ERROR);
    }
}
