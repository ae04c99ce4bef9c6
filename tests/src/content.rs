//! File contents that are a pure function of a seed and an offset.
//!
//! The generator lives in the simulator (`ferry_sim::content`), which serves simulated
//! files from it; this module re-exports it so the harnesses here and the simulator agree
//! on every byte.

pub use ferry_sim::content::{byte_at, fill, range};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_agree_with_bytes_and_differ_by_seed() {
        let r = range(7, 1000, 64);
        assert_eq!(r[5], byte_at(7, 1005));
        assert_ne!(range(7, 0, 64), range(8, 0, 64));
        assert_ne!(range(7, 0, 64), range(7, 64, 64));
    }
}
