//! vigie-detect (being built).
