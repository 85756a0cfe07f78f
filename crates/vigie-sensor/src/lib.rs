//! vigie-sensor (being built).
