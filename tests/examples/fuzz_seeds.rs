//! Writes the fuzz targets' seeds to `fuzz/corpus/<target>/seed-<name>`, the corpora
//! cargo-fuzz starts from: `cargo run -p ferry-tests --example fuzz_seeds`.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut written = 0;
    for (target, name, data) in ferry_tests::fuzz::seeds() {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir)?;
        let file: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        std::fs::write(dir.join(format!("seed-{file}")), data)?;
        written += 1;
    }
    eprintln!("{written} seeds written to {}", corpus.display());
    Ok(())
}
