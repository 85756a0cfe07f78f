//! vigie-radius (being built).
