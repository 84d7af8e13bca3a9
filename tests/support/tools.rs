//! Tools the tests need from the machine: a free loopback port, and an installed program or a clear failure.

use std::net::TcpListener;
use std::path::PathBuf;

/// Fails the test with an install hint when `tool` is missing: tests never skip silently.
pub fn require_tool(tool: &str, install: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(tool))
        .find(|path| path.is_file());
    found.unwrap_or_else(|| panic!("`{tool}` is not installed; this test needs it: {install}"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
