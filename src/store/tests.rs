use super::*;
use std::collections::BTreeSet;

#[test]
fn put_get_delete_versions() {
    let s = Store::new();
    assert_eq!(s.version("t"), 0);
    assert_eq!(s.put("t", b"a".to_vec(), b"1".to_vec()).unwrap(), 1);
    assert_eq!(s.get("t", b"a").unwrap().as_slice(), b"1");
    assert!(s.delete("t", b"a").unwrap());
    assert!(!s.delete("t", b"a").unwrap());
    assert_eq!(s.version("t"), 3);
    assert!(s.get("t", b"a").is_none());
}

#[test]
fn reload_many_swaps_tables_together_and_returns_their_versions() {
    let s = Store::new();
    s.put("a", b"x".to_vec(), b"0".to_vec()).unwrap();
    let versions = s
        .reload_many(vec![
            ("a".into(), vec![(b"k".to_vec(), b"1".to_vec())]),
            ("b".into(), vec![]),
        ])
        .unwrap();
    assert_eq!(versions, vec![2, 1]);
    let snap = s.snapshot();
    assert_eq!(snap.get("a", b"k").unwrap().as_slice(), b"1");
    assert!(snap.get("a", b"x").is_none());
    assert_eq!((snap.version("a"), snap.version("b")), (2, 1));
}

#[test]
fn cas_detects_conflicts_and_a_failed_swap_changes_no_version() {
    let s = Store::new();
    assert!(s.compare_and_swap("t", b"k", None, Some(b"1".to_vec())).unwrap());
    assert!(!s.compare_and_swap("t", b"k", None, Some(b"2".to_vec())).unwrap());
    assert_eq!(s.version("t"), 1);
    assert!(s.compare_and_swap("t", b"k", Some(b"1"), Some(b"2".to_vec())).unwrap());
    assert_eq!(s.get("t", b"k").unwrap().as_slice(), b"2");
    assert!(s.compare_and_swap("t", b"k", Some(b"2"), None).unwrap());
    assert!(s.get("t", b"k").is_none());
}

#[test]
fn each_write_returns_the_version_it_created() {
    let s = Arc::new(Store::new());
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                (0..200u32)
                    .map(|i| {
                        let pair = vec![(format!("{t}-{i}").into_bytes(), vec![1])];
                        if i % 2 == 0 {
                            s.put_many("t", pair).unwrap()
                        } else {
                            s.reload_many(vec![("t".into(), pair)]).unwrap()[0]
                        }
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let all: Vec<u64> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "no two writes report the same version");
    assert_eq!(distinct, (1..=1600).collect());
}

#[test]
fn writes_share_structure_with_older_snapshots() {
    let s = Store::new();
    s.reload(
        "t",
        (0..10_000u32).map(|i| (i.to_le_bytes().to_vec(), vec![0])).collect(),
    )
    .unwrap();
    let before = s.snapshot();
    s.put("t", 5u32.to_le_bytes().to_vec(), vec![1]).unwrap();
    assert_eq!(before.get("t", &5u32.to_le_bytes()).unwrap().as_slice(), &[0]);
    assert_eq!(s.get("t", &5u32.to_le_bytes()).unwrap().as_slice(), &[1]);
    assert_eq!((before.len("t"), s.snapshot().len("t")), (10_000, 10_000));
}

#[test]
fn the_header_follows_writes_to_mapped_tables() {
    let s = Store::new();
    s.put("a", b"k".to_vec(), b"v".to_vec()).unwrap();
    let [pid, fd, len, _] = s.attach().unwrap();
    assert_eq!(pid, u64::from(std::process::id()));
    let mapped = s.map_tables(&["a".into(), "never".into()]).unwrap();
    assert_eq!((mapped[0].slot, mapped[0].image.version), (0, 1));
    assert_eq!((mapped[1].slot, mapped[1].image.version), (1, 0));
    let header = s.published.header().unwrap();
    assert_eq!((header.version(0), header.version(1)), (1, 0));
    s.reload_many(vec![("a".into(), vec![]), ("never".into(), vec![])])
        .unwrap();
    assert_eq!((header.version(0), header.version(1)), (2, 1));
    assert_eq!(header.sequence() % 2, 0);
    assert_eq!(std::fs::read(format!("/proc/self/fd/{fd}")).unwrap().len() as u64, len);
    // Asking again for an unchanged version reuses the image; a new version gets a new one.
    let again = s.map_tables(&["a".into()]).unwrap();
    assert_eq!(again[0].image.version, 2);
    let same = s.map_tables(&["a".into()]).unwrap();
    assert!(Arc::ptr_eq(&again[0].image, &same[0].image));
}

#[test]
fn reload_is_atomic_for_concurrent_readers() {
    let s = Arc::new(Store::new());
    s.reload(
        "t",
        vec![(b"a".to_vec(), b"0".to_vec()), (b"b".to_vec(), b"0".to_vec())],
    )
    .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (s, stop) = (s.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut torn = 0;
                let mut last = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let snap = s.snapshot();
                    if snap.get("t", b"a") != snap.get("t", b"b") {
                        torn += 1;
                    }
                    let v = snap.version("t");
                    assert!(v >= last, "versions only increase");
                    last = v;
                }
                torn
            })
        })
        .collect();
    for i in 0..2000u32 {
        let v = i.to_string().into_bytes();
        s.reload("t", vec![(b"a".to_vec(), v.clone()), (b"b".to_vec(), v)])
            .unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let torn: u32 = readers.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(torn, 0);
    assert_eq!(s.version("t"), 2001);
}
