//! `vigie-ransim`: encrypts the files of a test directory the way
//! ransomware does, so the detector and the response can be tested for real.
//! Argument parsing only; the work is in `vigie_scenario::ransim`.

use clap::Parser;
use vigie_scenario::ransim::{self, Options};

fn main() -> std::process::ExitCode {
    let opts = Options::parse();
    match ransim::run(&opts) {
        Ok(s) => {
            println!(
                "vigie-ransim: touched {} files in {} directories ({} notes) in {:.2} s",
                s.files, s.dirs, s.notes, s.seconds
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vigie-ransim: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
