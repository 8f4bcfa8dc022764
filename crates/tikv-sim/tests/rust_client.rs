//! TiKV's Rust client (`tikv-client` 0.4, unary Raw* calls, no BatchCommands) against the store
//! and a real pd-server: the RawKV calls across region splits.

mod common;

use common::{start_with, store_options, wait_replicated};
use testenv::pd::StoreOptions;
use tikv_client::{Key, RawClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_reads_and_writes_across_splits() {
    let options = StoreOptions {
        initial_regions: 8,
        config: "[coprocessor]\nregion-split-size = \"32KiB\"\nregion-split-keys = 200\n".into(),
        ..store_options()
    };
    let (pd, client) = start_with(1, 3, options).await;
    let ids: Vec<u64> = pd.stores().iter().map(|s| s.id()).collect();
    wait_replicated(&client, &ids, 3, 8).await;
    let raw = RawClient::new(pd.addresses())
        .await
        .expect("client connects");

    let value = |i: u32| format!("value-{i}-{}", "x".repeat(100)).into_bytes();
    let pairs: Vec<(Key, Vec<u8>)> = (0..1000u32)
        .map(|i| (Key::from(format!("rust/{i:05}")), value(i)))
        .collect();
    for chunk in pairs.chunks(100) {
        raw.batch_put(chunk.to_vec()).await.expect("batch put");
    }
    raw.put("single".to_owned(), b"1".to_vec())
        .await
        .expect("put");
    assert_eq!(
        raw.get("single".to_owned()).await.expect("get"),
        Some(b"1".to_vec())
    );
    assert_eq!(raw.get("nothing".to_owned()).await.expect("get"), None);
    let got = raw
        .batch_get(vec![
            "rust/00007".to_owned(),
            "absent".to_owned(),
            "rust/00999".to_owned(),
        ])
        .await
        .expect("batch get");
    assert_eq!(got.len(), 2, "missing keys are left out");

    // Scans cross the regions the writes split.
    let all = raw
        .scan("rust/".to_owned().."rust0".to_owned(), 5000)
        .await
        .expect("scan");
    assert_eq!(all.len(), 1000);
    assert_eq!(all[500].value(), &value(500));
    let back = raw
        .scan_reverse("rust/".to_owned().."rust0".to_owned(), 3)
        .await
        .expect("reverse scan");
    let keys: Vec<Vec<u8>> = back.into_iter().map(|p| Vec::from(p.into_key())).collect();
    assert_eq!(
        keys,
        [
            b"rust/00999".to_vec(),
            b"rust/00998".to_vec(),
            b"rust/00997".to_vec()
        ]
    );

    raw.delete_range("rust/00100".to_owned().."rust/00900".to_owned())
        .await
        .expect("delete range");
    raw.delete("rust/00000".to_owned()).await.expect("delete");
    let left = raw
        .scan("rust/".to_owned().."rust0".to_owned(), 5000)
        .await
        .expect("scan");
    assert_eq!(left.len(), 199);

    let cas = raw.with_atomic_for_cas();
    let (prev, swapped) = cas
        .compare_and_swap("cas".to_owned(), None::<Vec<u8>>, b"a".to_vec())
        .await
        .expect("cas");
    assert!(swapped && prev.is_none());
    let (prev, swapped) = cas
        .compare_and_swap("cas".to_owned(), Some(b"x".to_vec()), b"b".to_vec())
        .await
        .expect("cas");
    assert_eq!((prev, swapped), (Some(b"a".to_vec()), false));
    assert_eq!(
        cas.get("cas".to_owned()).await.expect("get"),
        Some(b"a".to_vec())
    );
}
