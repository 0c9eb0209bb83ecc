#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::breaker::window::*;

#[test]
fn window_memory_is_bounded_by_buckets() {
    let mut w = Window::new(60_000);
    for t in 0..100_000u64 {
        w.record(t * 7, t % 3 == 0);
    }
    assert_eq!(w.failures.len(), BUCKETS);
    let (f, c) = w.totals(700_000);
    assert!(c <= 60_000 / 7 + 1 && f <= c, "{f}/{c}");
}

#[test]
fn counts_expire_bucket_by_bucket() {
    let mut w = Window::new(2_000); // 100 ms buckets
    w.record(0, true);
    w.record(150, false);
    assert_eq!(w.totals(1_999), (1, 2));
    assert_eq!(w.totals(2_000), (0, 1));
    assert_eq!(w.totals(2_100), (0, 0));
}

#[test]
fn long_idle_gap_clears_everything() {
    let mut w = Window::new(1_000);
    for t in 0..10 {
        w.record(t * 10, true);
    }
    w.record(1_000_000, false);
    assert_eq!(w.totals(1_000_000), (0, 1));
}

#[test]
fn tiny_window_still_has_a_bucket_width() {
    let w = Window::new(1);
    assert_eq!(w.bucket_ms, 1);
}
