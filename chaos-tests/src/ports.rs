//! Free loopback ports.
//!
//! A port is found by binding `127.0.0.1:0`, reading the port the kernel chose and dropping the
//! listener. Ports handed out by this process are remembered so that two clusters started by
//! parallel tests in the same test binary never get the same port, even if the kernel would
//! hand it out again before the first child binds it.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, bail};

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// One free loopback address `127.0.0.1:PORT`.
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(free_addrs(1)?[0])
}

/// `n` distinct free loopback addresses. All listeners are held until every port is chosen.
pub fn free_addrs(n: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let mut taken = handed_out().lock().unwrap_or_else(|e| e.into_inner());
    let mut listeners = Vec::with_capacity(n);
    let mut addrs = Vec::with_capacity(n);
    let mut attempts = 0;
    while addrs.len() < n {
        attempts += 1;
        if attempts > 1000 {
            bail!("could not find {n} free loopback ports");
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("cannot bind 127.0.0.1:0 to find a free port")?;
        let addr = listener.local_addr()?;
        if taken.insert(addr.port()) {
            addrs.push(addr);
            listeners.push(listener);
        }
    }
    Ok(addrs)
}
