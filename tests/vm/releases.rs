//! Other rdma-core releases (tests/guest/releases.sh, with userspace from
//! tests/releases/fetch.sh run through trixie's loader): Debian trixie's
//! 56.1 (private ABI 34, the v45+ `verbs_qp`) and sid's 65 (ABI 65), each
//! through that release's stock librxe and through ours, side by side.

use super::{our_log, read};
use std::collections::{BTreeMap, BTreeSet};

const RELEASES: [(&str, u32, u32); 2] = [("trixie", 34, 56), ("sid", 65, 65)];

/// (case, release-provider) -> the rest of its CASE line.
fn cases() -> BTreeMap<(String, String), String> {
    read("cases_releases.txt")
        .lines()
        .filter_map(|l| {
            let mut f = l.strip_prefix("CASE ")?.splitn(3, ' ');
            Some(((f.next()?.to_string(), f.next()?.to_string()), f.next()?.to_string()))
        })
        .collect()
}

#[test]
fn every_release_case_passes_through_stock_and_ours() {
    let all = cases();
    let mut failures = Vec::new();
    for (release, ..) in RELEASES {
        // devinfo_rdmav_drivers runs through stock only: it records what
        // RDMAV_DRIVERS loads beside the machine's driver files (no isolation).
        let names = |p: &str| -> BTreeSet<String> {
            all.keys()
                .filter(|(n, rp)| *rp == format!("{release}-{p}") && n != "devinfo_rdmav_drivers")
                .map(|(n, _)| n.clone())
                .collect()
        };
        let (stock, ours) = (names("stock"), names("ours"));
        assert!(stock.len() >= 18, "{release}: too few cases through stock: {stock:?}");
        assert_eq!(stock, ours, "{release}: stock and ours ran different cases");
        for name in &stock {
            for p in ["stock", "ours"] {
                let rest = &all[&(name.clone(), format!("{release}-{p}"))];
                // Stable tokens: the verdict first, then served=ok (the loader saw that provider only).
                if !rest.starts_with("PASS ") || !rest.contains("served=ok") {
                    failures.push(format!("{name} {release}-{p}: {rest}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "release cases failed:\n{}", failures.join("\n"));
}

#[test]
fn devinfo_is_identical_through_each_releases_stock_and_ours() {
    for (release, ..) in RELEASES {
        let stock = read(&format!("releases/devinfo.{release}-stock.txt"));
        let ours = read(&format!("releases/devinfo.{release}-ours.txt"));
        assert!(stock.contains("hca_id:\trxe0") && stock.contains("GID[  1]"), "{release} stock devinfo:\n{stock}");
        assert_eq!(stock, ours, "{release}: ibv_devinfo -v differs between its stock librxe and ours");
    }
}

#[test]
fn ours_knows_which_libibverbs_it_serves() {
    for (release, abi, rdma_core) in RELEASES {
        let log = our_log(&format!("devinfo.{release}-ours"));
        let token = format!("libibverbs private ABI {abi}, rdma-core {rdma_core})");
        assert!(log.contains(&token), "{release}: no '{token}' in our log:\n{log}");
    }
}
