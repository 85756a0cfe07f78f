//! vigie-radius: Vigie's RADIUS server for VPN two-factor authentication.
pub mod packet;
