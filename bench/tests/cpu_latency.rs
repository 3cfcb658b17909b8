//! The CPU latency limit the suite records is the one the kernel enforces:
//! a request held through `/dev/cpu_dma_latency` is read back, and it ends
//! when its file is closed.

use std::fs::OpenOptions;
use std::io::Write;

use heavyread_bench::procfs::{cpu_latency_limit_us, Machine};

#[test]
fn a_held_cpu_latency_request_is_read_back_and_ends_with_its_file() {
    let held = OpenOptions::new().write(true).open("/dev/cpu_dma_latency");
    let Ok(mut f) = held else {
        // Not root (or no device): the limit cannot be read either.
        assert_eq!(cpu_latency_limit_us(), None);
        return;
    };
    let before = cpu_latency_limit_us().expect("readable as root");
    // 7 µs, then 5 µs on the same request: values no other process is
    // likely to hold, so the limit follows them.
    f.write_all(&7i32.to_ne_bytes()).unwrap();
    assert_eq!(cpu_latency_limit_us(), Some(before.min(7)));
    assert_eq!(Machine::detect().cpu_latency_us, Some(before.min(7)));
    f.write_all(&5i32.to_ne_bytes()).unwrap();
    assert_eq!(cpu_latency_limit_us(), Some(before.min(5)));
    drop(f);
    assert_eq!(
        cpu_latency_limit_us(),
        Some(before),
        "the request outlived its file"
    );
}
