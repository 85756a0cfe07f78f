//! vigie-scenario: tools for playing the attack Vigie was born from on a
//! test machine. Its one job today is [`ransim`], the encryption simulator
//! behind the `vigie-ransim` binary: our own, not malware, confined to a
//! directory that carries a marker file.
//!
//! Main types: [`ransim::Options`] (clap arguments), [`ransim::Summary`].

pub mod ransim;
