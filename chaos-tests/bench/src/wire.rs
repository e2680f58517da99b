//! TCP traffic between some processes and one server port, from the kernel's own per-socket
//! counters (`ss -tinp`, iproute2): what the coordinators send to and receive from the
//! database, without a proxy in the path that would add its own cost.
//!
//! Per socket the kernel counts `bytes_sent`, `bytes_received` and `data_segs_out` (segments
//! carrying data). The PostgreSQL client writes each message batch at once with `TCP_NODELAY`
//! and waits for the answer, so on loopback (one segment holds 64 KiB) a client data segment
//! is one request, and the number of them is the number of round trips. Connections opened
//! and closed between two readings are not seen; the coordinators' pools keep theirs open.

use std::process::Command;

use anyhow::Context;

/// What the selected sockets counted, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Sockets seen.
    pub sockets: u64,
    /// Bytes the clients sent.
    pub bytes_sent: u64,
    /// Bytes the clients received.
    pub bytes_received: u64,
    /// Segments with data the clients sent: requests, round trips.
    pub data_segments_sent: u64,
}

impl Traffic {
    /// `after - self`, counter by counter (sockets: those seen at the end).
    pub fn until(&self, after: &Traffic) -> Traffic {
        Traffic {
            sockets: after.sockets,
            bytes_sent: after.bytes_sent.saturating_sub(self.bytes_sent),
            bytes_received: after.bytes_received.saturating_sub(self.bytes_received),
            data_segments_sent: after
                .data_segments_sent
                .saturating_sub(self.data_segments_sent),
        }
    }
}

/// The traffic of the TCP sockets that processes `pids` have open to port `port`.
pub fn traffic_to(port: u16, pids: &[u32]) -> anyhow::Result<Traffic> {
    let output = Command::new("ss")
        .args(["-tinpH", "dport", "=", &format!(":{port}")])
        .output()
        .context("running `ss` (iproute2)")?;
    anyhow::ensure!(
        output.status.success(),
        "`ss` failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(parse(&String::from_utf8_lossy(&output.stdout), pids))
}

/// Sums the counters of the sockets of `pids` in `ss -tinpH` output: a line per socket
/// (`STATE RECV-Q SEND-Q LOCAL PEER users:(("name",pid=N,fd=M))`) followed by an indented
/// line of `key:value` counters.
pub fn parse(text: &str, pids: &[u32]) -> Traffic {
    let mut traffic = Traffic::default();
    let mut selected = false;
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            selected = owner_pids(line).any(|pid| pids.contains(&pid));
            if selected {
                traffic.sockets += 1;
            }
            continue;
        }
        if !selected {
            continue;
        }
        for field in line.split_whitespace() {
            let Some((key, value)) = field.split_once(':') else {
                continue;
            };
            let Ok(value) = value.parse::<u64>() else {
                continue;
            };
            match key {
                "bytes_sent" => traffic.bytes_sent += value,
                "bytes_received" => traffic.bytes_received += value,
                "data_segs_out" => traffic.data_segments_sent += value,
                _ => {}
            }
        }
        selected = false;
    }
    traffic
}

/// The `pid=N` of a socket line's `users:((...))`.
fn owner_pids(line: &str) -> impl Iterator<Item = u32> + '_ {
    line.split("pid=")
        .skip(1)
        .filter_map(|rest| rest.split([',', ')']).next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SS: &str = "\
ESTAB 0      0      127.0.0.1:43981 127.0.0.1:5432 users:((\"coordinator\",pid=100,fd=24))
\t bbr wscale:10,10 rto:208 rtt:4.02/3.203 mss:34816 bytes_sent:230850 bytes_acked:230850 bytes_received:71109 segs_out:302 segs_in:286 data_segs_out:274 data_segs_in:275 bbr:(bw:2bps,mrtt:0.009) send 1247140299bps
ESTAB 0      0      127.0.0.1:43982 127.0.0.1:5432 users:((\"bench\",pid=7,fd=3))
\t cubic bytes_sent:999 bytes_received:999 data_segs_out:9
ESTAB 0      0      127.0.0.1:43983 127.0.0.1:5432 users:((\"coordinator\",pid=101,fd=25))
\t cubic bytes_sent:150 bytes_acked:150 bytes_received:891 data_segs_out:26 data_segs_in:25
";

    #[test]
    fn sums_the_sockets_of_the_given_processes_only() {
        let traffic = parse(SS, &[100, 101]);
        assert_eq!(
            traffic,
            Traffic {
                sockets: 2,
                bytes_sent: 231_000,
                bytes_received: 72_000,
                data_segments_sent: 300,
            }
        );
        assert_eq!(parse(SS, &[42]), Traffic::default());
        let before = parse(SS, &[101]);
        let diff = before.until(&traffic);
        assert_eq!((diff.bytes_sent, diff.data_segments_sent), (230_850, 274));
    }

    #[test]
    fn reads_this_machine() {
        // Whatever is connected to port 1 (nothing): no socket, no error where `ss` exists.
        if let Ok(traffic) = traffic_to(1, &[std::process::id()]) {
            assert_eq!(traffic.sockets, 0);
        }
    }
}
