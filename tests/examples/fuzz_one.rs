//! Runs one fuzz target's body on one input, on the stable toolchain, to reproduce a finding
//! with the whole panic message: `cargo run -p ferry-tests --example fuzz_one -- <target>
//! <file>` (a crash file from `fuzz/artifacts/<target>/`, say).

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, target, file] = &args[..] else {
        eprintln!("usage: fuzz_one <target> <file>");
        std::process::exit(2);
    };
    let data = std::fs::read(file).unwrap_or_else(|e| panic!("{file}: {e}"));
    let Some((_, body)) = ferry_tests::fuzz::TARGETS.iter().find(|(n, _)| n == target) else {
        eprintln!("no fuzz target {target}");
        std::process::exit(2);
    };
    body(&data);
}
