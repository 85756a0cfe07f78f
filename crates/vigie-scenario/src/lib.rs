//! vigie-scenario: tools for playing the attack Vigie was born from on a
//! test machine. [`ransim`] is the encryption simulator behind the
//! `vigie-ransim` binary (our own, not malware, confined to a directory that
//! carries a marker file); [`share`] makes a small file share to encrypt or
//! work on; [`seed`] is the whole seed incident behind `vigie-seed-incident`
//! (network namespaces, real manager and agents, the attack step by step,
//! measured delays).
//!
//! Main types: [`ransim::Options`], [`ransim::Summary`], [`seed::Options`],
//! [`seed::Outcome`] (the timeline table and the checks), [`seed::lab::Lab`].

pub mod ransim;
pub mod seed;
pub mod share;
